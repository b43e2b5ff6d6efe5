# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Fabric vxlan on the controller: the overlay part of the node document (devices, peer lines, direct routes,
the INPUT chain), the VTEP MAC, and the settings' validation."""

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay import parse_peers
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import build_document
from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import (
    overlay_config,
    runtime_config,
    underlay_family,
    vtep_address,
    vtep_mac,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError, fmt_address, to_ipnetwork
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify import VerifyError, probe_addresses

CLUSTERS = ["10.60.0.0/18", "fd00:60::/56"]


def plan(ips):
    """A plan of len(ips) nodes n1.. with node IPs ``ips`` (lists) and dual-stack /26 + /64 blocks."""
    nodes = {}
    for i, node_ips in enumerate(ips):
        v4 = ipaddress.ip_network("10.60.0.0/26").network_address + 64 * i
        nodes["n%d" % (i + 1)] = {"node_ips": node_ips, "pod_cidrs": ["%s/26" % v4, "fd00:60:0:%x::/64" % i],
                                  "bridge_addresses": ["%s/26" % (v4 + 1), "fd00:60:0:%x::1/64" % i]}
    return {"cluster_cidrs": CLUSTERS, "node_cidrs": [], "nodes": nodes}


def test_vtep_mac_is_stable_unicast_local_and_differs_by_node_cluster_and_vni():
    mac = vtep_mac(CLUSTERS, 1, "n1")
    assert mac == vtep_mac(list(CLUSTERS), 1, "n1") == vtep_mac(CLUSTERS[::-1], 1, "n1")
    first = int(mac.split(":", maxsplit=1)[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 2
    others = {vtep_mac(CLUSTERS, 1, "n2"), vtep_mac(CLUSTERS, 2, "n1"), vtep_mac(["10.61.0.0/18"], 1, "n1")}
    assert mac not in others and len(others) == 3


def test_underlay_family_prefers_the_pods_own_family():
    assert underlay_family({4: 1, 6: 1}, {4: 1, 6: 1}, 6) == 6
    assert underlay_family({4: 1}, {4: 1, 6: 1}, 6) == 4
    assert underlay_family({6: 1}, {6: 1}, 4) == 6
    assert underlay_family({4: 1}, {6: 1}, 4) is None


def test_dual_stack_pods_over_an_ipv4_only_underlay():
    p = plan([["172.20.0.11/24"], ["172.20.1.11/24"], ["172.20.0.12/24"]])
    out = overlay_config(p, "n1", 7, 4789)
    (dev,) = out["overlay"]["devices"]
    assert dev == {"name": "podnet.vx4", "family": 4, "local": "172.20.0.11", "mac": vtep_mac(CLUSTERS, 7, "n1"),
                   "addresses": ["10.60.0.0/32", "fd00:60::ffff:ffff:ffff:ffff/128"]}
    lines = parse_peers(out["overlay"]["peers"])
    assert {(l["block"], l["vtep"], l["dst"], l["peer"]) for l in lines} == {
        ("10.60.0.64/26", "10.60.0.64", "172.20.1.11", "n2"),
        ("fd00:60:0:1::/64", "fd00:60:0:1:ffff:ffff:ffff:ffff", "172.20.1.11", "n2"),
        ("10.60.0.128/26", "10.60.0.128", "172.20.0.12", "n3"),
        ("fd00:60:0:2::/64", "fd00:60:0:2:ffff:ffff:ffff:ffff", "172.20.0.12", "n3")}
    assert all(l["mac"] == vtep_mac(CLUSTERS, 7, l["peer"]) for l in lines)
    assert out["routes"] == []
    (chain_item,) = out["iptables"]
    chain = chain_item["chains"][0]
    assert chain_item["ip_version"] == 4 and chain["name"] == "PODNET-VXLAN"
    assert [r.get("source") for r in chain["rules"]] == ["172.20.1.11", "172.20.0.12", None]
    assert chain["rules"][-1]["jump"] == "DROP"
    assert chain["jumps"] == [{"from": "INPUT", "position": "insert", "protocol": "udp", "dport": 4789}]


def test_each_vtep_address_on_the_device_of_its_family_over_a_dual_stack_underlay():
    p = plan([["172.20.0.11/24", "fd00:20::11/64"], ["172.20.1.11/24", "fd00:21::11/64"]])
    devices = {d["name"]: d["addresses"] for d in overlay_config(p, "n1", 1, 4789)["overlay"]["devices"]}
    assert devices == {"podnet.vx4": ["10.60.0.0/32"], "podnet.vx6": ["fd00:60::ffff:ffff:ffff:ffff/128"]}


@pytest.mark.parametrize("block, vtep", [("10.60.0.64/26", "10.60.0.64"), ("10.60.0.7/32", "10.60.0.7"),
                                         ("fd00:60:0:1::/64", "fd00:60:0:1:ffff:ffff:ffff:ffff"),
                                         ("fd00:60::100/120", "fd00:60::1ff"), ("fd00:60::4/126", "fd00:60::7")])
def test_the_vtep_address_is_never_the_subnet_router_anycast_address_of_an_ipv6_block(block, vtep):
    """IPv4: the network address (no pod's, no bridge's); IPv6: the last address, because the first is the
    Subnet-Router anycast address the kernel puts on the bridge once forwarding is on."""
    net = to_ipnetwork(block)
    assert fmt_address(vtep_address(net), net.version) == vtep
    if net.version == 6:
        assert vtep_address(net) not in (net.first, net.first + 1)      # anycast, gateway


def test_host_local_never_hands_out_the_ipv6_vtep_address():
    p = plan([["172.20.0.11/24"], ["172.20.1.11/24"]])
    for fabric, end in (("vxlan", "fd00:60::ffff:ffff:ffff:fffe"), ("l2_routes", None)):
        ranges = runtime_config(p, "n1", ["cni"], fabric=fabric)["cni"]["plugins"][0]["ipam"]["ranges"]
        v6 = [r[0] for r in ranges if ":" in r[0]["subnet"]][0]
        assert v6.get("rangeEnd") == end, fabric
        v4 = [r[0] for r in ranges if ":" not in r[0]["subnet"]][0]
        assert "rangeEnd" not in v4         # the IPv4 VTEP address is the network address: never handed out
    doc = build_document(p, "n1", {"fabric": "vxlan", "runtimes": ["cni"]})
    v6 = [r[0] for r in doc["cni"]["conflist"]["plugins"][0]["ipam"]["ranges"] if ":" in r[0]["subnet"]][0]
    assert v6["rangeEnd"] == "fd00:60::ffff:ffff:ffff:fffe"
    assert "fd00:60::ffff:ffff:ffff:ffff/128" in doc["overlay"]["devices"][0]["addresses"]


def test_verify_probe_pods_wired_by_hand_never_take_the_vtep_address():
    p = plan([["172.20.0.11/24"], ["172.20.1.11/24"]])
    plain = probe_addresses(p, "n1", [])
    assert "fd00:60::ffff:ffff:ffff:ffff/64" in plain[0]           # other fabrics: the top address is free
    pods = probe_addresses(p, "n1", [], fabric="vxlan")
    assert [a for a in pods[0] if ":" in a] == ["fd00:60::ffff:ffff:ffff:fffe/64"]
    assert [a for a in pods[1] if ":" in a] == ["fd00:60::ffff:ffff:ffff:fffd/64"]
    assert [a for a in pods[0] if ":" not in a] == ["10.60.0.62/26"]   # IPv4: the network address, never a pod's
    p["nodes"]["n1"]["pod_cidrs"] = ["10.60.0.0/26", "fd00:60::4/126"]
    with pytest.raises(VerifyError, match=r"the gateway fd00:60::5 and the VTEP address fd00:60::7"):
        probe_addresses(p, "n1", [], fabric="vxlan")


def test_dual_stack_pods_over_an_ipv6_only_underlay():
    p = plan([["fd00:20::11/64"], ["fd00:21::11/64"]])
    out = overlay_config(p, "n2", 1, 8472)
    (dev,) = out["overlay"]["devices"]
    assert (dev["name"], dev["local"]) == ("podnet.vx6", "fd00:21::11")
    assert {l["dst"] for l in parse_peers(out["overlay"]["peers"])} == {"fd00:20::11"}
    assert [i["ip_version"] for i in out["iptables"]] == [6]


def test_direct_routing_only_for_on_link_peers():
    p = plan([["172.20.0.11/24"], ["172.20.1.11/24"], ["172.20.0.12/24"], ["172.20.0.13"]])
    out = overlay_config(p, "n1", 1, 4789, direct_routing=True)
    assert out["routes"] == ["10.60.0.128/26 via 172.20.0.12 peer n3"]
    peers = {(l["peer"], l["block"]) for l in parse_peers(out["overlay"]["peers"])}
    assert ("n3", "10.60.0.128/26") not in peers and ("n3", "fd00:60:0:2::/64") in peers   # no IPv6 node IP
    assert ("n2", "10.60.0.64/26") in peers and ("n4", "10.60.0.192/26") in peers   # n4: prefix unknown


def test_direct_routing_with_the_plans_own_form_of_node_networks():
    """The planner gives node_ips as plain addresses and each node's networks in node_cidrs."""
    p = plan([["172.20.0.11"], ["172.20.1.11"], ["172.20.0.12"]])
    for name, cidr in (("n1", "172.20.0.0/24"), ("n2", "172.20.1.0/24"), ("n3", "172.20.0.0/24")):
        p["nodes"][name]["node_cidrs"] = [cidr]
    out = overlay_config(p, "n3", 1, 4789, direct_routing=True)
    assert out["routes"] == ["10.60.0.0/26 via 172.20.0.11 peer n1"]
    assert out["overlay"]["devices"][0]["local"] == "172.20.0.12"
    assert {l["peer"] for l in parse_peers(out["overlay"]["peers"])} == {"n1", "n2"}   # n1: IPv6 pods still


def test_the_document_masquerades_node_traffic_and_merges_the_chain_into_the_filter_table():
    p = plan([["172.20.0.11/24"], ["172.20.1.11/24"]])
    doc = build_document(p, "n1", {"fabric": "vxlan", "vxlan_vni": "99", "vxlan_tx_checksum_offload": "false"})
    assert doc["overlay"]["vni"] == 99 and doc["overlay"]["tx_checksum_offload"] is False
    items = {(i["ip_version"], i["table"]): [c["name"] for c in i["chains"]] for i in doc["iptables"]}
    assert items[(4, "filter")] == ["PODNET-FORWARD", "PODNET-VXLAN"]
    masq = [c for i in doc["iptables"] if i["table"] == "nat" and i["ip_version"] == 4 for c in i["chains"]][0]
    kept = [r["destination"] for r in masq["rules"] if r["jump"] == "RETURN"]
    assert kept == ["10.60.0.0/18", "169.254.0.0/16"]     # no node IP: pod -> other node is masqueraded
    assert "tx_checksum_offload" not in build_document(p, "n1", {"fabric": "vxlan"})["overlay"]
    assert "overlay" not in build_document(p, "n1", {"fabric": "router"})


@pytest.mark.parametrize("settings,needle", [
    ({"vxlan_vni": 0}, "podnet_vxlan_vni=0 is not a VXLAN network identifier 1..16777215"),
    ({"vxlan_vni": 16777216}, "2^24 - 1 = 16777215"),
    ({"vxlan_vni": "one"}, "podnet_vxlan_vni='one'"),
    ({"vxlan_port": 0}, "podnet_vxlan_port=0 is not a UDP port 1..65535"),
    ({"vxlan_port": 70000}, "podnet_vxlan_port=70000"),
    ({"vxlan_direct_routing": "maybe"}, "podnet_vxlan_direct_routing='maybe'"),
    ({"vxlan_tx_checksum_offload": "sometimes"}, "podnet_vxlan_tx_checksum_offload='sometimes'"),
])
def test_bad_vxlan_setting_names_host_and_variable(settings, needle):
    with pytest.raises(PlanError) as err:
        build_document(plan([["172.20.0.11/24"]]), "n1", dict(settings, fabric="vxlan"))
    assert any(e.startswith("host n1: ") and needle in e for e in err.value.errors), err.value.errors


def test_node_ips_per_underlay_family_are_required():
    p = plan([["172.20.0.11/24"], ["fd00:21::11/64"]])
    with pytest.raises(PlanError) as err:
        overlay_config(p, "n1", 1, 4789)
    assert "host n1: peer n2 has node IPs of IPv6 only, this node of IPv4 only" in err.value.errors[0]
    p = plan([[], ["172.20.1.11/24"]])
    with pytest.raises(PlanError) as err:
        overlay_config(p, "n1", 1, 4789)
    assert "host n1: podnet_fabric vxlan needs a node IP" in err.value.errors[0]


def test_peer_lines_are_checked_on_the_node():
    with pytest.raises(Exception) as err:
        parse_peers("10.60.0.64/26 via 10.60.1.0 mac 02:00:00:00:00:01 dst 172.20.1.11 peer n2\nnonsense")
    assert "VTEP address 10.60.1.0 is not inside its block" in str(err.value)
    assert "line 2 'nonsense'" in str(err.value)
