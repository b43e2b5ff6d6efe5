# SPDX-License-Identifier: Apache-2.0
"""Unit and property tests of the pure planner (plugins/plugin_utils/plan.py)."""

from __future__ import annotations

import random

import netaddr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import (
    NodeInput,
    PlanConfig,
    PlanError,
    make_plan,
    natural_key,
    parse_state,
    recorded_misfits,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_inputs import default_interfaces


def nodes_for(names, base="172.31.250.", v6=False):
    out = []
    for i, name in enumerate(names):
        ips = ["%s%d/24" % (base, 10 + i)] if len(names) < 240 else ["172.%d.%d.%d/8" % (16 + i // 65000, (i // 250) % 250, i % 250 + 1)]
        if v6:
            ips.append("fd31::%x/64" % (i + 16))
        out.append(NodeInput(name=name, node_ip=ips))
    return out


def errors_of(config, nodes, state=None):
    with pytest.raises(PlanError) as info:
        make_plan(config, nodes, state)
    return info.value.errors


# --- basics -----------------------------------------------------------------

def test_defaults_give_each_node_a_24_and_its_gateway():
    result = make_plan(PlanConfig(), nodes_for(["n1", "n2", "n3"]))
    assert [result.nodes[n].pod_cidrs for n in ("n1", "n2", "n3")] == [
        ["10.244.0.0/24"], ["10.244.1.0/24"], ["10.244.2.0/24"]]
    assert result.nodes["n2"].gateways == ["10.244.1.1"]
    assert result.nodes["n2"].bridge_addresses == ["10.244.1.1/24"]
    assert result.state["nodes"] == {"n1": ["10.244.0.0/24"], "n2": ["10.244.1.0/24"], "n3": ["10.244.2.0/24"]}
    assert result.as_dict()["node_cidrs"] == ["172.31.250.0/24"]


def test_dual_stack_gives_one_block_per_family_ipv4_first():
    config = PlanConfig(cluster_cidrs=["fd00:10:244::/56", "10.200.0.0/20"], node_prefix_ipv4=26)
    result = make_plan(config, nodes_for(["a", "b"], v6=True))
    assert result.nodes["b"].pod_cidrs == ["10.200.0.64/26", "fd00:10:244:1::/64"]
    assert result.nodes["b"].gateways == ["10.200.0.65", "fd00:10:244:1::1"]
    assert result.cluster_cidrs == ["10.200.0.0/20", "fd00:10:244::/56"]


def test_natural_order_for_new_nodes_and_independent_of_inventory_order():
    names = ["node10", "node2", "node1"]
    a = make_plan(PlanConfig(), nodes_for(names))
    b = make_plan(PlanConfig(), nodes_for(list(reversed(names))))
    assert a.nodes["node1"].pod_cidrs == ["10.244.0.0/24"]
    assert a.nodes["node2"].pod_cidrs == ["10.244.1.0/24"]
    assert a.nodes["node10"].pod_cidrs == ["10.244.2.0/24"]
    assert {n: p.pod_cidrs for n, p in a.nodes.items()} == {n: p.pod_cidrs for n, p in b.nodes.items()}
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]


def test_node_ip_from_facts_with_its_network():
    node = NodeInput(name="x", fact_ipv4={"address": "192.168.7.5", "netmask": "255.255.255.0"},
                     fact_ipv6={"address": "2001:db8::5", "prefix": "64"})
    result = make_plan(PlanConfig(cluster_cidrs=["10.244.0.0/16", "fd00::/48"]), [node])
    assert result.nodes["x"].node_ips == ["192.168.7.5", "2001:db8::5"]
    assert result.nodes["x"].node_cidrs == ["192.168.7.0/24", "2001:db8::/64"]


def test_node_ip_of_a_family_without_default_route_comes_from_the_other_familys_interface():
    """A router away (its advertisement with router lifetime 0 removed the IPv6 default route): the IPv6 node IP is
    the global address on the interface of the IPv4 default route, as the facts list it; and the other way round."""
    eth0 = {"ipv4": {"address": "192.168.7.5", "netmask": "255.255.255.0"},
            "ipv6": [{"address": "fe80::1", "prefix": "64", "scope": "link"},
                     {"address": "2001:db8::5", "prefix": "64", "scope": "global"}]}
    facts = {"default_ipv4": {"address": "192.168.7.5", "netmask": "255.255.255.0", "interface": "eth0"},
             "default_ipv6": {}, "eth0": eth0, "eth1": {"ipv6": [{"address": "2001:db8:1::9", "scope": "global"}]}}
    interfaces = default_interfaces(facts)
    assert interfaces == {"eth0": eth0}
    node = NodeInput(name="x", fact_ipv4=facts["default_ipv4"], fact_ipv6={}, fact_interfaces=interfaces)
    result = make_plan(PlanConfig(cluster_cidrs=["10.244.0.0/16", "fd00::/48"]), [node])
    assert result.nodes["x"].node_ips == ["192.168.7.5", "2001:db8::5"]
    assert result.nodes["x"].node_cidrs == ["192.168.7.0/24", "2001:db8::/64"]
    # only IPv6 has a default route: IPv4 from its interface
    v6 = {"address": "2001:db8::5", "prefix": "64", "interface": "eth0"}
    node = NodeInput(name="y", fact_ipv4={}, fact_ipv6=v6, fact_interfaces={"eth0": eth0})
    result = make_plan(PlanConfig(cluster_cidrs=["10.244.0.0/16", "fd00::/48"]), [node])
    assert result.nodes["y"].node_ips == ["192.168.7.5", "2001:db8::5"]


def test_no_default_route_and_no_address_on_the_interface_is_named():
    eth0 = {"ipv4": {"address": "192.168.7.5", "netmask": "255.255.255.0"},
            "ipv6": [{"address": "fe80::1", "prefix": "64", "scope": "link"}]}
    node = NodeInput(name="x", fact_ipv4={"address": "192.168.7.5", "interface": "eth0"}, fact_ipv6={},
                     fact_interfaces={"eth0": eth0})
    message = "\n".join(errors_of(PlanConfig(cluster_cidrs=["10.244.0.0/16", "fd00::/48"]), [node]))
    assert "host x: no IPv6 node IP" in message and "interface of the other family's default route" in message
    assert "podnet_node_ip" in message


# --- stickiness ---------------------------------------------------------------

def test_recorded_nodes_keep_their_blocks_when_others_come_and_go():
    first = make_plan(PlanConfig(), nodes_for(["a", "b", "c"]))
    second = make_plan(PlanConfig(), nodes_for(["0new", "c", "a"]), first.state)
    assert second.nodes["a"].pod_cidrs == first.nodes["a"].pod_cidrs
    assert second.nodes["c"].pod_cidrs == first.nodes["c"].pod_cidrs
    # b's block is released, and the new node gets a never-used block instead.
    assert second.state["released"] == ["10.244.1.0/24"]
    assert second.nodes["0new"].pod_cidrs == ["10.244.3.0/24"]
    assert second.released == {"b": ["10.244.1.0/24"]}
    assert second.added == {"0new": ["10.244.3.0/24"]}


def test_released_blocks_are_reused_only_when_no_never_used_block_is_left_oldest_first():
    config = PlanConfig(cluster_cidrs=["10.0.0.0/22"])  # four /24 blocks
    s1 = make_plan(config, nodes_for(["a", "b", "c", "d"])).state
    s2 = make_plan(config, nodes_for(["a", "c"]), s1).state  # b, d released (b first)
    assert s2["released"] == ["10.0.1.0/24", "10.0.3.0/24"]
    s3 = make_plan(config, nodes_for(["a", "c", "e"]), s2)
    assert s3.nodes["e"].pod_cidrs == ["10.0.1.0/24"]
    assert s3.state["released"] == ["10.0.3.0/24"]


def test_released_blocks_wait_while_never_used_ones_exist():
    config = PlanConfig(cluster_cidrs=["10.0.0.0/22"])
    s1 = make_plan(config, nodes_for(["a", "b"])).state
    s2 = make_plan(config, nodes_for(["b"]), s1).state
    s3 = make_plan(config, nodes_for(["b", "c", "d"]), s2)
    assert s3.nodes["c"].pod_cidrs == ["10.0.2.0/24"]
    assert s3.nodes["d"].pod_cidrs == ["10.0.3.0/24"]
    assert s3.state["released"] == ["10.0.0.0/24"]


def test_explicit_claim_is_honoured_and_moves_a_recorded_node():
    s1 = make_plan(PlanConfig(), nodes_for(["a", "b"])).state
    nodes = nodes_for(["a", "b"])
    nodes[0] = NodeInput(name="a", node_ip=nodes[0].node_ip, pod_cidrs="10.244.9.0/24")
    result = make_plan(PlanConfig(), nodes, s1)
    assert result.nodes["a"].pod_cidrs == ["10.244.9.0/24"]
    assert result.state["released"] == ["10.244.0.0/24"]


def test_new_nodes_avoid_explicit_claims():
    nodes = nodes_for(["a", "b"])
    nodes[1] = NodeInput(name="b", node_ip=nodes[1].node_ip, pod_cidrs=["10.244.0.0/24"])
    result = make_plan(PlanConfig(), nodes)
    assert result.nodes["b"].pod_cidrs == ["10.244.0.0/24"]
    assert result.nodes["a"].pod_cidrs == ["10.244.1.0/24"]


def test_adding_ipv6_to_a_recorded_ipv4_cluster_keeps_ipv4_blocks():
    s1 = make_plan(PlanConfig(), nodes_for(["a", "b"])).state
    dual = PlanConfig(cluster_cidrs=["10.244.0.0/16", "fd00::/48"])
    result = make_plan(dual, nodes_for(["b", "a"], v6=True), s1)
    assert result.nodes["a"].pod_cidrs == ["10.244.0.0/24", "fd00::/64"]
    assert result.nodes["b"].pod_cidrs == ["10.244.1.0/24", "fd00:0:0:1::/64"]


# --- errors -------------------------------------------------------------------

@pytest.mark.parametrize("cidr, words", [
    ("10.244.1.0/16", ["podnet_cluster_cidrs[0]", "10.244.1.0/16", "host bits", "10.244.0.0/16"]),
    ("banana", ["podnet_cluster_cidrs[0]", "banana", "not a network"]),
    ("10.244.0.0", ["podnet_cluster_cidrs[0]", "not a network"]),
])
def test_bad_cluster_cidr(cidr, words):
    message = "\n".join(errors_of(PlanConfig(cluster_cidrs=[cidr]), nodes_for(["a"])))
    for word in words:
        assert word in message


def test_two_cidrs_of_one_family():
    message = "\n".join(errors_of(PlanConfig(cluster_cidrs=["10.1.0.0/16", "10.2.0.0/16"]), nodes_for(["a"])))
    assert "two IPv4" in message


@pytest.mark.parametrize("prefix, words", [
    (16, ["podnet_node_prefix_ipv4", "/16", "not longer", "10.244.0.0/16"]),
    (12, ["podnet_node_prefix_ipv4", "/12", "not longer"]),
    (31, ["podnet_node_prefix_ipv4", "/31", "2^(32-31) = 2", "0 usable", "at least 2"]),
    (32, ["podnet_node_prefix_ipv4", "/32", "2^(32-32) = 1"]),
    ("x", ["podnet_node_prefix_ipv4", "not a prefix"]),
])
def test_bad_node_prefix_ipv4(prefix, words):
    message = "\n".join(errors_of(PlanConfig(node_prefix_ipv4=prefix), nodes_for(["a"])))
    for word in words:
        assert word in message


def test_bad_node_prefix_ipv6():
    config = PlanConfig(cluster_cidrs=["fd00::/48"], node_prefix_ipv6=127)
    message = "\n".join(errors_of(config, [NodeInput("a", node_ip="fd31::1")]))
    assert "podnet_node_prefix_ipv6" in message and "/127" in message and "1 usable" in message


def test_exhaustion_says_how_many_blocks_and_nodes():
    message = "\n".join(errors_of(PlanConfig(cluster_cidrs=["10.9.0.0/23"]), nodes_for(["a", "b", "c", "d"])))
    assert "10.9.0.0/23 holds 2 /24 blocks (2^(24-23)" in message
    assert "4 more nodes need one" in message
    assert "2 short" in message


def test_exhaustion_counts_recorded_nodes():
    config = PlanConfig(cluster_cidrs=["10.9.0.0/23"])
    state = make_plan(config, nodes_for(["a", "b"])).state
    message = "\n".join(errors_of(config, nodes_for(["a", "b", "c"]), state))
    assert "2 are assigned and 1 more node needs one (c)" in message


@pytest.mark.parametrize("service, reserved, words", [
    (["10.244.128.0/17"], [], ["podnet_service_cidrs[0] 10.244.128.0/17", "overlaps", "podnet_cluster_cidrs[0]"]),
    ([], ["10.0.0.0/8"], ["podnet_reserved_cidrs[0] 10.0.0.0/8", "overlaps", "podnet_cluster_cidrs[0]"]),
    (["10.96.0.0/12"], ["10.100.0.0/16"], ["podnet_reserved_cidrs[0]", "podnet_service_cidrs[0]"]),
    (["10.96.0.1/12"], [], ["podnet_service_cidrs[0]", "host bits"]),
])
def test_overlaps_among_cluster_service_reserved(service, reserved, words):
    message = "\n".join(errors_of(PlanConfig(service_cidrs=service, reserved_cidrs=reserved), nodes_for(["a"])))
    for word in words:
        assert word in message


def test_node_ip_inside_cluster_or_service():
    nodes = [NodeInput("a", node_ip="10.244.3.3"), NodeInput("b", node_ip="10.96.0.5")]
    message = "\n".join(errors_of(PlanConfig(service_cidrs=["10.96.0.0/12"]), nodes))
    assert "host a: node IP 10.244.3.3" in message and "inside the cluster network 10.244.0.0/16" in message
    assert "host b: node IP 10.96.0.5" in message and "podnet_service_cidrs[0]" in message


def test_node_without_ip_of_a_configured_family():
    config = PlanConfig(cluster_cidrs=["10.244.0.0/16", "fd00::/48"])
    message = "\n".join(errors_of(config, [NodeInput("a", node_ip="172.16.0.1"), NodeInput("b")]))
    assert "host a: no IPv6 node IP" in message
    assert "host b: no IPv4 node IP" in message and "podnet_node_ip" in message


def test_bad_node_ip_and_duplicate_node_ip():
    message = "\n".join(errors_of(PlanConfig(), [NodeInput("a", node_ip="nope"),
                                                 NodeInput("b", node_ip="172.16.0.1"),
                                                 NodeInput("c", node_ip="172.16.0.1/24")]))
    assert "host a: podnet_node_ip: 'nope' is not an IP address" in message
    assert "hosts b and c have the same node IP 172.16.0.1" in message


@pytest.mark.parametrize("claim, words", [
    ("10.245.0.0/24", ["host a: podnet_pod_cidrs", "10.245.0.0/24", "outside the cluster network 10.244.0.0/16"]),
    ("10.244.0.0/25", ["host a: podnet_pod_cidrs", "/25", "podnet_node_prefix_ipv4 is 24"]),
    ("fd00::/64", ["host a: podnet_pod_cidrs", "IPv6", "no IPv6 network"]),
    ("10.244.0.1/24", ["host a: podnet_pod_cidrs", "host bits"]),
    (["10.244.1.0/24", "10.244.2.0/24"], ["host a: podnet_pod_cidrs[1]", "second IPv4"]),
])
def test_bad_explicit_claims(claim, words):
    nodes = [NodeInput("a", node_ip="172.16.0.1", pod_cidrs=claim)]
    message = "\n".join(errors_of(PlanConfig(), nodes))
    for word in words:
        assert word in message


def test_claim_by_two_nodes_or_against_the_state():
    nodes = [NodeInput("a", node_ip="172.16.0.1", pod_cidrs="10.244.5.0/24"),
             NodeInput("b", node_ip="172.16.0.2", pod_cidrs="10.244.5.0/24")]
    assert "hosts a and b both claim 10.244.5.0/24" in "\n".join(errors_of(PlanConfig(), nodes))
    state = {"nodes": {"b": ["10.244.5.0/24"]}}
    nodes = [NodeInput("a", node_ip="172.16.0.1", pod_cidrs="10.244.5.0/24"), NodeInput("b", node_ip="172.16.0.2")]
    message = "\n".join(errors_of(PlanConfig(), nodes, state))
    assert "host a: podnet_pod_cidrs claims 10.244.5.0/24, but the state file assigns 10.244.5.0/24 to host b" in message


@pytest.mark.parametrize("state, words", [
    ("a string", ["not valid", "mapping"]),
    ({"nodes": ["a"]}, ["not valid", "'nodes' must map"]),
    ({"nodes": {"a": "10.244.0.0/24"}}, ["not valid", "nodes.a must be a non-empty list"]),
    ({"nodes": {"a": ["10.244.0.5/24"]}}, ["not valid", "nodes.a[0]", "host bits"]),
    ({"nodes": {"a": ["10.244.0.0/24"], "b": ["10.244.0.0/23"]}}, ["not valid", "overlap"]),
    ({"version": 7, "nodes": {}}, ["not valid", "version 7"]),
])
def test_invalid_state(state, words):
    message = "\n".join(errors_of(PlanConfig(), nodes_for(["a"]), state))
    for word in words:
        assert word in message


def test_recorded_block_no_longer_fits_the_configuration():
    state = make_plan(PlanConfig(), nodes_for(["a"])).state
    message = "\n".join(errors_of(PlanConfig(cluster_cidrs=["10.50.0.0/16"]), nodes_for(["a"]), state))
    assert "host a: the state file assigns it 10.244.0.0/24" in message and "outside the cluster network" in message
    message = "\n".join(errors_of(PlanConfig(node_prefix_ipv4=25), nodes_for(["a"]), state))
    assert "podnet_node_prefix_ipv4 is 25" in message


def held_as(nodes, held):
    """The nodes as asked what they hold: ``held`` maps a name to its list (absent: nothing held)."""
    return [NodeInput(name=n.name, node_ip=n.node_ip, held=list(held.get(n.name, []))) for n in nodes]


def test_a_recorded_block_no_node_holds_is_planned_anew():
    # recorded (say by a site run that stopped after the record), never applied: the nodes were asked, hold nothing
    state = make_plan(PlanConfig(cluster_cidrs=["10.61.0.0/20"]), nodes_for(["p", "q"])).state
    for config in (PlanConfig(cluster_cidrs=["10.62.0.0/20"]), PlanConfig(cluster_cidrs=["10.61.0.0/20"],
                                                                          node_prefix_ipv4=26)):
        plan = make_plan(config, held_as(nodes_for(["p", "q"]), {}), state)
        cluster = netaddr.IPNetwork(config.cluster_cidrs[0])
        for name in ("p", "q"):
            block = netaddr.IPNetwork(plan.nodes[name].pod_cidrs[0])
            assert block in cluster and block.prefixlen == int(config.node_prefix_ipv4)
        assert set(plan.released) == {"p", "q"}
        assert all(str(n) not in plan.state["released"] for n in ("10.61.0.0/24", "10.61.1.0/24"))


def test_a_held_recorded_block_is_protected_with_advice_for_the_playbook():
    state = make_plan(PlanConfig(cluster_cidrs=["10.61.0.0/20"]), nodes_for(["p", "q"])).state
    nodes = held_as(nodes_for(["p", "q"]), {"q": ["10.61.1.1/24"]})
    errors = errors_of(PlanConfig(cluster_cidrs=["10.62.0.0/20"]), nodes, state)
    assert len(errors) == 1 and errors[0].startswith("host q: the state file assigns it 10.61.1.0/24"), errors
    assert "podnet_allow_readdress=true" in errors[0] and "delete" not in errors[0]
    errors = errors_of(PlanConfig(cluster_cidrs=["10.62.0.0/20"], read_only=True), nodes, state)
    assert "your variables differ from the recorded plan" in errors[0] and "delete" not in errors[0]
    assert "allow_readdress" not in errors[0]
    # a node prefix change on a held block: one error for the node, not one more from adoption
    errors = errors_of(PlanConfig(cluster_cidrs=["10.61.0.0/20"], node_prefix_ipv4=25), nodes, state)
    assert len(errors) == 1 and "changing the node prefix" in errors[0], errors
    # confirmed: both nodes planned anew, in the new network
    plan = make_plan(PlanConfig(cluster_cidrs=["10.62.0.0/20"], allow_readdress=True), nodes, state)
    assert [plan.nodes[n].pod_cidrs for n in ("p", "q")] == [["10.62.0.0/24"], ["10.62.1.0/24"]]
    # not asked (None): counts as held
    errors = errors_of(PlanConfig(cluster_cidrs=["10.62.0.0/20"]), nodes_for(["p", "q"]), state)
    assert len(errors) == 2


def test_recorded_misfits_names_the_nodes_to_ask():
    state = make_plan(PlanConfig(cluster_cidrs=["10.61.0.0/20", "fd00:61::/56"]), nodes_for(["p", "q"], v6=True)).state
    assert recorded_misfits(PlanConfig(cluster_cidrs=["10.61.0.0/20", "fd00:61::/56"]), state, ["p", "q"]) == []
    assert recorded_misfits(PlanConfig(cluster_cidrs=["10.61.0.0/20"]), state, ["p", "q", "r"]) == ["p", "q"]
    assert recorded_misfits(PlanConfig(cluster_cidrs=["10.61.0.0/20", "fd00:61::/56"], node_prefix_ipv6=80),
                            state, ["q"]) == ["q"]
    assert recorded_misfits(PlanConfig(cluster_cidrs=["bad"]), state, ["p"]) == []


def test_all_errors_are_reported_together():
    config = PlanConfig(cluster_cidrs=["10.244.1.0/16"], service_cidrs=["x"])
    errors = errors_of(config, nodes_for(["a"]))
    assert len(errors) == 2


def test_parse_state_accepts_empty():
    assert parse_state(None) == ({}, [])
    assert parse_state({"nodes": None}) == ({}, [])


# --- properties ---------------------------------------------------------------

NAMES = [f"n{i}" for i in range(40)]


def check_invariants(config, result):
    clusters = [netaddr.IPNetwork(c) for c in config.cluster_cidrs]
    avoid = [netaddr.IPNetwork(c) for c in list(config.service_cidrs) + list(config.reserved_cidrs)]
    seen = []
    for plan in result.nodes.values():
        families = set()
        for cidr, gw in zip(plan.pod_cidrs, plan.gateways):
            net = netaddr.IPNetwork(cidr)
            assert net.version not in families
            families.add(net.version)
            assert any(net in c for c in clusters)
            assert not any(net.first <= a.last and a.first <= net.last for a in avoid)
            assert netaddr.IPAddress(gw) == net.network + 1
            prefix = config.node_prefix_ipv4 if net.version == 4 else config.node_prefix_ipv6
            assert net.prefixlen == prefix
            seen.append(net)
        assert families == {c.version for c in clusters}
    seen.sort(key=lambda n: (n.version, n.first))
    for a, b in zip(seen, seen[1:]):
        assert a.version != b.version or a.last < b.first, (a, b)
    assert result.state["nodes"] == {n: p.pod_cidrs for n, p in result.nodes.items()}


operations = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "shuffle"]), st.integers(0, 10_000)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, dual=st.booleans(), seed=st.integers(0, 2**16))
def test_property_sticky_disjoint_inside_deterministic(ops, dual, seed):
    config = PlanConfig(
        cluster_cidrs=["10.20.0.0/18"] + (["fd00:20::/56"] if dual else []),
        node_prefix_ipv4=24, node_prefix_ipv6=64,
        service_cidrs=["10.96.0.0/12"], reserved_cidrs=["192.168.0.0/16"],
    )
    rng = random.Random(seed)
    present = []
    state = None
    recorded = {}
    ever_used = set()
    for op, value in ops:
        if op == "add":
            candidates = [n for n in NAMES if n not in present]
            if candidates:
                present.insert(value % (len(present) + 1), candidates[value % len(candidates)])
        elif op == "remove" and present:
            present.pop(value % len(present))
        else:
            rng.shuffle(present)
        nodes = nodes_for(present, v6=dual)
        result = make_plan(config, nodes, state)
        check_invariants(config, result)
        for name in present:
            if name in recorded:
                # Sticky: a recorded node that is still present keeps its blocks.
                assert result.nodes[name].pod_cidrs == recorded[name]
            else:
                # A new node never gets a block used before while never-used ones exist
                # (the /18 holds 64 blocks, more than the 40 names).
                assert not set(result.nodes[name].pod_cidrs) & ever_used
        # Deterministic: the same inventory, in any order, and state give the same plan.
        again = make_plan(config, list(reversed(nodes)), state)
        assert again.state == result.state
        state = result.state
        recorded = {n: list(c) for n, c in state["nodes"].items()}
        ever_used |= {c for cidrs in recorded.values() for c in cidrs}
    assert set(state["nodes"]) == set(present)


def test_a_node_holding_a_shared_segment_gateway_adopts_its_block():
    # fabric l2_bridge: the gateway on the bridge carries the cluster prefix; the block is the one it begins
    config = PlanConfig(cluster_cidrs=["10.60.0.0/16"], node_prefix_ipv4=26)
    nodes = nodes_for(["a", "b"])
    nodes[1] = NodeInput(name="b", node_ip=nodes[1].node_ip, held=["10.60.3.65/16"])
    plan = make_plan(config, nodes, None)
    assert plan.nodes["b"].pod_cidrs == ["10.60.3.64/26"]
    assert plan.nodes["a"].pod_cidrs == ["10.60.0.0/26"]


def test_a_shared_segment_address_that_begins_no_block_is_refused():
    config = PlanConfig(cluster_cidrs=["10.60.0.0/16"], node_prefix_ipv4=26)
    nodes = [NodeInput(name="b", node_ip=["172.31.250.10/24"], held=["10.60.3.70/16"])]
    errors = errors_of(config, nodes)
    assert any("host b holds 10.60.0.0/16" in e for e in errors), errors
