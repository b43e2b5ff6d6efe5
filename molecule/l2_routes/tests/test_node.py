# SPDX-License-Identifier: Apache-2.0
"""What site left on every lab node, read back from the node's kernel and files."""

from __future__ import annotations

import ipaddress
import json


def first_host(cidr):
    return str(ipaddress.ip_network(cidr)[1])


def test_state_file_assigns_every_node_a_distinct_24(nodes, state):
    assert set(state["nodes"]) == set(nodes)
    blocks = [ipaddress.ip_network(c[0]) for c in state["nodes"].values()]
    assert all(b.prefixlen == 24 and b.subnet_of(ipaddress.ip_network("10.244.0.0/16")) for b in blocks)
    assert len(set(blocks)) == len(blocks)


def test_bridge_holds_the_gateway_with_the_uplink_mtu(nodes, state):
    for name, host in nodes.items():
        link = json.loads(host.check_output("ip -json -details link show cbr0"))[0]
        assert link["linkinfo"]["info_kind"] == "bridge"
        assert "UP" in link["flags"]
        uplink = json.loads(host.check_output("ip -json link show eth0"))[0]
        assert link["mtu"] == uplink["mtu"]
        addrs = json.loads(host.check_output("ip -json -4 addr show dev cbr0"))[0]["addr_info"]
        gateway = first_host(state["nodes"][name][0])
        assert [(a["local"], a["prefixlen"]) for a in addrs] == [(gateway, 24)], name


def test_forwarding_is_on_and_persisted(nodes):
    for host in nodes.values():
        assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"
        conf = host.file("/etc/sysctl.d/90-podnet-cluster.conf")
        assert conf.exists and "net.ipv4.ip_forward = 1" in conf.content_string


def test_routes_to_every_peer_via_its_node_ip_marked_with_protocol_158(nodes, node_vars, state):
    for name, host in nodes.items():
        routes = json.loads(host.check_output("ip -json route show proto 158"))
        got = {(r["dst"], r["gateway"], r["dev"]) for r in routes}
        want = {(state["nodes"][peer][0], node_vars[peer]["podnet_node_ip"].split("/")[0], "eth0")
                for peer in nodes if peer != name}
        assert got == want, name


def test_masquerade_and_forward_chains(nodes, node_vars, state):
    node_ips = [ipaddress.ip_interface(v["podnet_node_ip"]).ip for v in node_vars.values()]
    for name, host in nodes.items():
        nat = host.check_output("iptables-save -t nat")
        pod_cidr = state["nodes"][name][0]
        assert ("-A POSTROUTING -s %s -m addrtype ! --dst-type LOCAL -m comment --comment podnet.cluster "
                "-j PODNET-MASQ" % pod_cidr).replace("podnet.cluster", '"podnet.cluster"') in nat
        chain = [l for l in nat.splitlines() if l.startswith("-A PODNET-MASQ")]
        assert any("-d 10.244.0.0/16" in l and "RETURN" in l for l in chain)
        # l2_routes: the node addresses keep the pod's address, not the whole node network (docs/node.md)
        kept = [ipaddress.ip_network(l.split(" -d ")[1].split()[0]) for l in chain if " -d " in l and "RETURN" in l]
        assert all(any(ip in net for net in kept) for ip in node_ips), chain
        assert not any(net.prefixlen < 32 and any(ip in net for ip in node_ips) for net in kept
                       if net.num_addresses > 2), chain
        assert chain[-1].endswith("-j MASQUERADE")
        filt = host.check_output("iptables-save -t filter")
        assert '-A FORWARD -m comment --comment "podnet.cluster" -j PODNET-FORWARD' in filt


def test_docker_and_cni_configuration_split_the_subnet(nodes, state):
    for name, host in nodes.items():
        block = ipaddress.ip_network(state["nodes"][name][0])
        daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
        assert daemon["bridge"] == "cbr0" and daemon["iptables"] is False and daemon["ip-masq"] is False
        assert "bip" not in daemon
        docker_half = ipaddress.ip_network(daemon["fixed-cidr"])
        conflist = json.loads(host.file("/etc/cni/net.d/10-podnet.conflist").content_string)
        assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "loopback"]
        bridge = conflist["plugins"][0]
        assert bridge["bridge"] == "cbr0" and bridge["isGateway"] is True and bridge["ipMasq"] is False
        (rng,) = bridge["ipam"]["ranges"][0]
        assert rng["subnet"] == str(block)
        start, end = ipaddress.ip_address(rng["rangeStart"]), ipaddress.ip_address(rng["rangeEnd"])
        assert docker_half.subnet_of(block)
        assert end < docker_half.network_address and start > block.network_address + 1
