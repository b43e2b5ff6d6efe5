# SPDX-License-Identifier: Apache-2.0
"""The lab's topology as data (lab/plugins/module_utils/lab_topology.py): names, addresses, inventory."""

from __future__ import annotations

import pytest

from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import (
    LabError,
    build_inventory,
    build_topology,
)


def params(**kw):
    base = {"name": "lab", "nodes": None, "node_count": 3, "subnet": "172.31.250.0/24", "subnet_ipv6": "",
            "external_cidr": "203.0.113.0/24", "external_cidr_ipv6": "", "root": "/var/tmp/podnet-lab/lab",
            "state": "present"}
    base.update(kw)
    return base


def test_nodes_router_and_external_addresses():
    topo = build_topology(params(subnet="10.9.8.0/24", subnet_ipv6="fd00:9::/64",
                                 external_cidr_ipv6="fd00:203::/64"))
    assert topo["node_names"] == ["lab-node1", "lab-node2", "lab-node3"]
    assert topo["nodes"]["lab-node3"]["ipv4"] == "10.9.8.13"
    assert topo["nodes"]["lab-node3"]["ipv6"] == "fd00:9::13"
    assert topo["router_info"]["ipv4"] == "10.9.8.1"
    assert topo["external_info"]["ipv4"] == "203.0.113.10"


def test_named_nodes_and_inventory():
    topo = build_topology(params(nodes=["web", "db"], node_count=None))
    inv = build_inventory(topo, {"podnet_cluster_cidrs": ["10.50.0.0/16"]})
    nodes = inv["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]
    assert nodes["hosts"]["web"] == {"podnet_netns": "web", "podnet_netns_root": "/var/tmp/podnet-lab/lab/web",
                                     "podnet_node_ip": "172.31.250.11/24"}
    assert nodes["hosts"]["db"]["podnet_node_ip"] == "172.31.250.12/24"
    assert nodes["vars"] == {"podnet_verify_external": "203.0.113.10", "podnet_verify_external_host": "lab-ext",
                             "podnet_cluster_cidrs": ["10.50.0.0/16"]}


def test_bad_parameters_are_all_reported():
    with pytest.raises(LabError) as info:
        build_topology(params(name="-bad", subnet="172.31.250.0/30", node_count=5))
    text = str(info.value)
    assert "name" in text and "subnet" in text
    with pytest.raises(LabError) as info:
        build_topology(params(code_cache="relative/cache"))
    assert "code_cache: 'relative/cache' is not an absolute path" in str(info.value)


# --------------------------------------------------------------------------- the SSH option


def test_ssh_adds_a_controller_namespace_on_the_switch():
    from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import desired_state

    topo = build_topology(params(ssh=True, subnet="10.9.8.0/24", subnet_ipv6="fd00:9::/64"))
    assert topo["controller_info"] == {"netns": "lab-ctl", "ipv4": "10.9.8.2", "ipv6": "fd00:9::2",
                                       "key": "/var/tmp/podnet-lab/lab/ssh/id_ed25519",
                                       "run_prefix": "nsenter --net=/run/netns/lab-ctl --"}
    want = desired_state(topo)
    assert "lab-ctl" in want["namespaces"]
    assert want["links"][("lab-sw", "ctl")] == {"kind": "veth", "master": "br0", "alias": "lab-ctl", "addrs": []}
    assert want["links"][("lab-ctl", "eth0")]["addrs"] == ["10.9.8.2/24", "fd00:9::2/64"]
    assert ("lab-sw", "ctl", "lab-ctl", "eth0") in want["veths"]
    # no route of the controller leads anywhere: it only reaches the underlay, on-link
    assert not [r for r in want["routes"] if r[0] == "lab-ctl"]
    plain = desired_state(build_topology(params()))
    assert "lab-ctl" not in plain["namespaces"] and ("lab-sw", "ctl") not in plain["links"]


def test_ssh_inventory_and_sshd_config():
    from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import sshd_files

    topo = build_topology(params(ssh=True, node_count=2, subnet_ipv6="fd00:31::/64"))
    inv = build_inventory(topo, {})
    node = inv["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]["hosts"]["lab-node2"]
    assert node["ansible_connection"] == "ssh"
    assert node["ansible_host"] == "172.31.250.12"
    assert node["ansible_user"] == "root"
    assert node["ansible_ssh_private_key_file"] == "/var/tmp/podnet-lab/lab/ssh/id_ed25519"
    assert "StrictHostKeyChecking=no" in node["ansible_ssh_common_args"]
    assert node["ansible_ssh_common_args"].endswith(
        "-o 'ProxyCommand=nsenter --net=/run/netns/lab-ctl -- /usr/bin/python3 "
        "/var/tmp/podnet-lab/lab/ssh/proxy.py %h %p'")
    assert node["ansible_control_path_dir"] == "/var/tmp/podnet-lab/lab/ssh/cp"  # not shared with another lab
    assert node["podnet_netns"] == "lab-node2"
    router = inv["all"]["children"]["podnet_lab"]["children"]["podnet_lab_router"]["hosts"]["lab-router"]
    assert "ansible_connection" not in router  # the group's netns connection
    spec = sshd_files(topo)["lab-node2"]
    lines = spec["config"].splitlines()
    assert [line for line in lines if line.startswith("ListenAddress")] == [
        "ListenAddress 172.31.250.12:22", "ListenAddress [fd00:31::12]:22"]
    for line in ("UsePAM no", "PasswordAuthentication no", "PermitRootLogin prohibit-password",
                 "HostKey /var/tmp/podnet-lab/lab/lab-node2/sshd/ssh_host_ed25519_key",
                 "PidFile /var/tmp/podnet-lab/lab/lab-node2/sshd/sshd.pid",
                 "AuthorizedKeysFile /var/tmp/podnet-lab/lab/ssh/authorized_keys"):
        assert line in lines
    assert spec["privsep_dir"] == "/var/tmp/podnet-lab/lab/lab-node2/upper/run/sshd"
    assert spec["home"] == "/var/tmp/podnet-lab/lab/lab-node2/sshd/home"
    plain = build_inventory(build_topology(params()), {})
    assert "ansible_connection" not in plain["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"][
        "hosts"]["lab-node1"]


def test_node_cannot_take_the_controller_name():
    with pytest.raises(LabError) as info:
        build_topology(params(nodes=["lab-ctl"], node_count=None, ssh=True))
    assert "lab-ctl is the name of the lab's own controller namespace" in str(info.value)


def test_switch_hosts_know_each_other_permanently():
    """Every host on the switch gets the other hosts' underlay addresses (both families), none of its own."""
    from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import desired_state

    topo = build_topology(params(node_count=4, subnet="10.9.8.0/24", subnet_ipv6="fd00:9::/64"))
    neigh = desired_state(topo)["neighbours"]
    assert sorted(neigh) == sorted(["lab-router"] + topo["node_names"])
    node2 = neigh["lab-node2"]
    assert node2["10.9.8.11"] == "lab-node1" and node2["fd00:9::11"] == "lab-node1"
    assert node2["10.9.8.1"] == "lab-router" and node2["fd00:9::1"] == "lab-router"
    assert "10.9.8.12" not in node2 and "fd00:9::12" not in node2
    assert len(node2) == 2 * 4  # router + 3 other nodes, two families
    assert len(neigh["lab-router"]) == 2 * 4
    # the external host is not on the switch
    assert "203.0.113.10" not in node2
    # off: the underlay resolves its neighbours by ARP/NDP
    assert desired_state(build_topology(params(static_neighbours=False)))["neighbours"] == {}


# --------------------------------------------------------------------------- router advertisements, node IPs


def test_router_advertisements_replace_the_static_ipv6_default_route():
    from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import desired_state, ra_files

    base = dict(subnet="10.9.8.0/24", subnet_ipv6="fd00:9::/64")
    static = desired_state(build_topology(params(**base)))["routes"]
    assert ("lab-node1", 6, "default", "fd00:9::1") in static
    topo = build_topology(params(router_advertisements=True, ra_interval=30, ra_lifetime=600, **base))
    routes = desired_state(topo)["routes"]
    assert ("lab-node1", 4, "default", "10.9.8.1") in routes
    assert [r for r in routes if r[1] == 6 and r[2] == "default"] == []
    spec = ra_files(topo)
    assert spec["dir"] == "/var/tmp/podnet-lab/lab/lab-router/ra"
    assert spec["settings_text"] == '{"interval": 30, "lifetime": 600}\n'
    assert spec["argv"][:3] == ["nsenter", "--net=/run/netns/lab-router", "--"]
    assert spec["argv"][-3:] == ["eth0", spec["settings"], spec["pid_file"]]


def test_router_advertisements_need_ipv6_and_sane_times():
    with pytest.raises(LabError) as info:
        build_topology(params(router_advertisements=True, ra_interval=0, ra_lifetime=-1))
    text = str(info.value)
    assert "router_advertisements" in text and "subnet_ipv6" in text
    assert "ra_interval: 0" in text and "ra_lifetime: -1" in text


def test_inventory_without_node_ips():
    topo = build_topology(params(nodes=["web"], node_count=None, node_ip=False))
    hosts = build_inventory(topo, {})["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]["hosts"]
    assert hosts["web"] == {"podnet_netns": "web", "podnet_netns_root": "/var/tmp/podnet-lab/lab/web"}


def test_segments_split_the_underlay_and_place_nodes_round_robin():
    from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import desired_state

    topo = build_topology(params(node_count=5, segments=3, subnet="10.9.8.0/24", subnet_ipv6="fd00:9::/64"))
    segs = topo["segments"]
    assert [s["subnet"] for s in segs] == ["10.9.8.0/26", "10.9.8.64/26", "10.9.8.128/26"]
    assert [s["router_ipv4"] for s in segs] == ["10.9.8.1", "10.9.8.65", "10.9.8.129"]
    assert [s["bridge"] for s in segs] == ["br0", "br1", "br2"]
    assert [s["router_link"] for s in segs] == ["eth0", "eth2", "eth3"]
    n = topo["nodes"]
    assert [(n["lab-node%d" % i]["segment"], n["lab-node%d" % i]["ipv4"]) for i in range(1, 6)] == [
        (0, "10.9.8.11"), (1, "10.9.8.75"), (2, "10.9.8.139"), (0, "10.9.8.12"), (1, "10.9.8.76")]
    assert n["lab-node2"]["gateway_ipv4"] == "10.9.8.65" and n["lab-node2"]["prefix_ipv4"] == 26
    assert n["lab-node2"]["ipv6"] == "fd00:9::4000:0:0:11" and n["lab-node2"]["switch_port"] == "s1p11"
    want = desired_state(topo)
    assert want["links"][("lab-sw", "s1p11")]["master"] == "br1"
    assert want["links"][("lab-router", "eth2")]["addrs"] == ["10.9.8.65/26", "fd00:9::4000:0:0:1/66"]
    assert ("lab-ext", 4, "10.9.8.0/24", "203.0.113.1") in want["routes"]


def test_one_segment_is_the_single_switch_lab():
    topo = build_topology(params())
    assert topo["nodes"]["lab-node1"]["ipv4"] == "172.31.250.11" and topo["nodes"]["lab-node1"]["switch_port"] == "p11"
    assert topo["nodes"]["lab-node1"]["prefix_ipv4"] == 24


def test_segments_that_do_not_fit_are_refused():
    with pytest.raises(LabError) as err:
        build_topology(params(segments=0))
    assert "segments: 0" in str(err.value)
    with pytest.raises(LabError) as err:
        build_topology(params(subnet="10.9.8.0/28", segments=8))
    assert "cannot be split into 8 segments" in str(err.value)


def test_static_neighbours_stay_within_a_segment():
    from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import switch_neighbours

    topo = build_topology(params(node_count=4, segments=2, subnet="10.9.8.0/24"))
    neigh = switch_neighbours(topo)
    assert neigh["lab-node1"] == {"10.9.8.1": "lab-router", "10.9.8.12": "lab-node3"}
    assert neigh["lab-node2"] == {"10.9.8.140": "lab-node4"}
    assert neigh["lab-router"] == {"10.9.8.11": "lab-node1", "10.9.8.12": "lab-node3"}
