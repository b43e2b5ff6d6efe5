# SPDX-License-Identifier: Apache-2.0
"""The vxlan fabric on the routed lab: nodes on two segments behind a router with no pod route, dual-stack pods
over a dual-stack underlay, strict rp_filter. Overlay entries, the three rules, who may send VXLAN, a reboot."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time

import pytest
import yaml

from lib.labtools import ping
from lib.molecule_scenario import assert_three_rules, run_verify
from lib.netns_backend import lab_hosts
from lib.vxlan_tools import (
    Listener,
    drop_counter,
    ip_json,
    make_pod,
    node_ips_of,
    overlay_entries,
    pod_addresses,
    remove_pod,
    run_in_view,
    send_udp,
    unit_exec_start,
    vtep_of,
    vxlan_packet,
    wanted_entries,
    wipe_kernel_state,
)

from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import vtep_mac

POD_PREFIX = "pnvx-tpod-"


@pytest.fixture(scope="module")
def lab(inventory):
    return yaml.safe_load(inventory.read_text())["all"]["children"]["podnet_lab"]


@pytest.fixture(scope="module")
def settings(node_vars, lab):
    group = lab["children"]["podnet_nodes"]["vars"]
    return dict(vni=int(group["podnet_vxlan_vni"]), port=int(group["podnet_vxlan_port"]),
                clusters=[str(c) for c in group["podnet_cluster_cidrs"]])


@pytest.fixture(scope="module")
def pods(state):
    """One test pod per node (dual-stack), removed afterwards."""
    made = {}
    for node, blocks in state["nodes"].items():
        addrs, gws = pod_addresses(blocks)
        made[node] = dict(netns=make_pod(node, POD_PREFIX + node.rsplit("-", 1)[1], addrs, gws),
                          addresses=[a.split("/")[0] for a in addrs])
    yield made
    for node, pod in made.items():
        remove_pod(node, pod["netns"])


def test_the_nodes_sit_on_two_segments_and_the_router_holds_no_pod_route(node_vars, lab, settings, inventory):
    gateways = {hv["podnet_node_ip"][0].split("/")[0]: hv["podnet_node_ip"][0] for hv in node_vars.values()}
    nets = {ipaddress.ip_interface(ip).network for ip in gateways.values()}
    assert len(nets) == 2, nets
    (router,) = lab["children"]["podnet_lab_router"]["hosts"]
    host = lab_hosts(str(inventory))[router]
    for flag in ("-4", "-6"):
        for route in json.loads(host.check_output("ip %s -json route show" % flag)):
            dst = route.get("dst", "default")
            if dst != "default" and not dst.startswith("fe80"):
                net = ipaddress.ip_network(dst if "/" in dst else dst + ("/128" if ":" in dst else "/32"))
                assert not any(net.overlaps(ipaddress.ip_network(c)) for c in settings["clusters"]), route


def test_strict_rp_filter_on_every_node(nodes):
    for name, host in nodes.items():
        assert host.file("/proc/sys/net/ipv4/conf/all/rp_filter").content_string.strip() == "1", name


def test_devices_macs_mtu_and_entries(nodes, node_vars, state, settings):
    node_ips = node_ips_of(node_vars)
    for name, host in nodes.items():
        mac = vtep_mac(settings["clusters"], settings["vni"], name)
        blocks = [ipaddress.ip_network(c) for c in state["nodes"][name]]
        for fam, dev in ((4, "podnet.vx4"), (6, "podnet.vx6")):
            (link,) = ip_json(name, "-d", "link", "show", "dev", dev)
            data = link["linkinfo"]["info_data"]
            assert (data["id"], data["port"], data["learning"]) == (settings["vni"], settings["port"], False), name
            assert (data.get("local") or data.get("local6")) == node_ips[name][fam]
            assert link["address"] == mac
            assert int(host.file("/sys/class/net/%s/addr_assign_type" % dev).content_string) == 3  # set: udev keeps it
            assert link["mtu"] == 1500 - (50 if fam == 4 else 70)
            addrs = {"%s/%s" % (a["local"], a["prefixlen"]) for e in ip_json(name, "addr", "show", "dev", dev)
                     for a in e["addr_info"] if a.get("scope") == "global"}
            # the VTEP address of the pod family this device carries (the node has both underlay families)
            assert addrs == {"%s/%d" % (vtep_of(b), b.max_prefixlen) for b in blocks if b.version == fam}
            features = host.check_output("ethtool -k %s" % dev)
            assert "tx-checksum-ip-generic: off" in features
        (bridge,) = ip_json(name, "link", "show", "dev", "cbr0")
        assert bridge["mtu"] == 1430
        conflist = json.loads(host.file("/etc/cni/net.d/10-podnet.conflist").content_string)
        assert conflist["plugins"][0]["mtu"] == 1430
        assert overlay_entries(name) == wanted_entries(state["nodes"], node_ips, name, settings["clusters"],
                                                       settings["vni"]), name


def test_only_peers_may_send_vxlan(nodes, lab, state, settings, pods):
    """A hand-built VXLAN packet for a pod: from a peer node on the other segment it arrives, from the external host
    (which reaches every node IP, but is no node) the PODNET-VXLAN chain drops it; under an INPUT policy of DROP
    the peer's still arrives."""
    names = sorted(nodes)
    target, sender = names[1], names[0]
    ext = list(lab["children"]["podnet_lab_external"]["hosts"])[0]
    target_ip = nodes[target].check_output("ip -4 -j addr show dev eth0")
    target_ip = json.loads(target_ip)[0]["addr_info"][0]["local"]
    pod = pods[target]
    pod_ip = pod["addresses"][0]
    src_vtep = vtep_of(state["nodes"][sender][0])

    def packet(text):
        """A VXLAN packet as the sender's kernel would make it: to the target's VTEP MAC, from the sender's VTEP
        address, carrying a UDP datagram (correct checksums) for the pod."""
        return vxlan_packet(settings["vni"], vtep_mac(settings["clusters"], settings["vni"], target),
                            vtep_mac(settings["clusters"], settings["vni"], sender), src_vtep, pod_ip, 5555, text)

    listener = Listener(pod["netns"], pod_ip, 5555)
    send_udp(sender, target_ip, settings["port"], packet(b"from-peer"))
    assert listener.result() == "got from-peer from %s" % src_vtep

    dropped = drop_counter(target)
    listener = Listener(pod["netns"], pod_ip, 5555)
    send_udp(ext, target_ip, settings["port"], packet(b"not-a-peer"))
    assert listener.after(1.0) == "nothing"
    assert drop_counter(target) == dropped + 1

    subprocess_policy = ["ip", "netns", "exec", target, "iptables", "-P", "INPUT"]
    subprocess.run(subprocess_policy + ["DROP"], check=True)
    try:
        listener = Listener(pod["netns"], pod_ip, 5555)
        send_udp(sender, target_ip, settings["port"], packet(b"policy-drop"))
        assert listener.result() == "got policy-drop from %s" % src_vtep
    finally:
        subprocess.run(subprocess_policy + ["ACCEPT"], check=True)


def test_pods_reach_pods_across_segments_with_strict_rp_filter(nodes, pods):
    for src in sorted(nodes):
        for dst in sorted(nodes):
            for addr in pods[dst]["addresses"]:
                assert ping(pods[src]["netns"], addr), (src, dst, addr)
                assert ping(src, addr), ("node", src, dst, addr)


def test_reboot_by_the_units_own_lines(nodes, state, settings, pods):
    """Wipe a node's kernel state as a reboot does, run its unit's ExecStart: same VTEP MAC, entries back, and its
    pods (re-created, as the runtime does after a boot) reachable from the other segment again."""
    name = sorted(nodes)[1]
    host = nodes[name]
    before = {dev: ip_json(name, "link", "show", "dev", dev)[0]["address"] for dev in ("podnet.vx4", "podnet.vx6")}
    entries = overlay_entries(name)
    wipe_kernel_state(name)
    assert not any(overlay_entries(name).values())
    command = unit_exec_start(host)
    result = run_in_view(host, command)
    assert result.rc == 0, result.stderr
    after = {dev: ip_json(name, "link", "show", "dev", dev)[0]["address"] for dev in ("podnet.vx4", "podnet.vx6")}
    assert after == before == {dev: vtep_mac(settings["clusters"], settings["vni"], name) for dev in before}
    assert overlay_entries(name) == entries
    assert "tx-checksum-ip-generic: off" in host.check_output("ethtool -k podnet.vx4")
    addrs, gws = pod_addresses(state["nodes"][name])
    make_pod(name, pods[name]["netns"], addrs, gws)
    other = sorted(nodes)[0]
    deadline = time.monotonic() + 10
    for addr in pods[name]["addresses"]:
        while not ping(pods[other]["netns"], addr) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ping(pods[other]["netns"], addr), addr
        assert ping(other, addr), addr


def test_verify_playbook_passes(inventory, nodes, state):
    families = sorted({ipaddress.ip_network(c).version for c in next(iter(state["nodes"].values()))})
    assert families == [4, 6]
    assert_three_rules(run_verify(inventory), len(nodes), families)
