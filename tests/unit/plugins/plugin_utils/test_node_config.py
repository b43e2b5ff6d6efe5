# SPDX-License-Identifier: Apache-2.0
"""Unit tests of what a node must look like (plugins/plugin_utils/node_config.py)."""

from __future__ import annotations

import netaddr
import pytest

from ansible_collections.podnet.cluster.plugins.plugin_utils.document import peer_routes
from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import (
    node_network,
    nonmasquerade_cidrs,
    runtime_config,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import NodeInput, PlanConfig, PlanError, make_plan


def plan_of(count=3, clusters=("10.244.0.0/16",), v6=False, prefix4=24, **kw):
    nodes = []
    for i in range(1, count + 1):
        ips = ["192.168.40.%d/24" % (10 + i)] + (["fd40::%d/64" % i] if v6 else [])
        nodes.append(NodeInput("node%d" % i, node_ip=ips))
    return make_plan(PlanConfig(cluster_cidrs=list(clusters), node_prefix_ipv4=prefix4, **kw), nodes).as_dict()


def test_routes_to_every_peer_and_not_to_self():
    plan = plan_of(4, clusters=("10.50.0.0/16", "fd00:50::/56"), v6=True)
    net = node_network(plan, "node2")
    routes = [route for node, route in peer_routes(plan) if node != "node2"]
    assert "10.50.0.0/24 via 192.168.40.11 peer node1" in routes
    assert "fd00:50::/64 via fd40::1 peer node1" in routes
    assert "10.50.3.0/24 via 192.168.40.14 peer node4" in routes
    assert not [r for r in routes if r.endswith(" peer node2")]
    assert len(routes) == 6
    assert "routes" not in net
    assert net["bridge_addresses"] == ["10.50.1.1/24", "fd00:50:0:1::1/64"]
    assert net["sysctl"] == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}


def test_masquerade_chain_returns_cluster_nodes_link_local_extra_then_masquerades():
    plan = plan_of(2, clusters=("10.50.0.0/16",))
    net = node_network(plan, "node1", nonmasquerade=["100.64.0.0/10"])
    (nat,) = [t for t in net["iptables"] if t["table"] == "nat"]
    chain = nat["chains"][0]
    assert chain["name"] == "PODNET-MASQ"
    returns = [r["destination"] for r in chain["rules"] if r["jump"] == "RETURN"]
    assert set(returns) == {"10.50.0.0/16", "192.168.40.0/24", "169.254.0.0/16", "100.64.0.0/10"}
    assert chain["rules"][-1] == {"comment": "leaving the cluster", "jump": "MASQUERADE"}
    assert chain["jumps"] == [{"from": "POSTROUTING", "position": "append", "source": "10.50.0.0/24",
                               "dst_type": "!LOCAL"}]
    (fwd,) = [t for t in net["iptables"] if t["table"] == "filter"]
    assert [r.get("source") or r.get("destination") for r in fwd["chains"][0]["rules"]] == ["10.50.0.0/16"] * 2


def test_node_ips_without_known_network_are_kept_unmasqueraded():
    plan = make_plan(PlanConfig(), [NodeInput("a", node_ip="192.0.2.10"), NodeInput("b", node_ip="198.51.100.7")]).as_dict()
    keep = nonmasquerade_cidrs(plan)[4]
    assert "192.0.2.10/32" in keep and "198.51.100.7/32" in keep


def test_no_masquerade():
    net = node_network(plan_of(2), "node1", masquerade=False)
    assert [t["table"] for t in net["iptables"]] == ["filter"]


def test_bad_nonmasquerade_cidr_names_the_variable():
    with pytest.raises(PlanError) as info:
        node_network(plan_of(1), "node1", nonmasquerade=["nope"])
    assert "podnet_nonmasquerade_cidrs[0]" in str(info.value)


def test_unknown_host():
    with pytest.raises(PlanError) as info:
        node_network(plan_of(1), "ghost")
    assert "host ghost" in str(info.value)


@pytest.mark.parametrize("prefix4", [24, 26, 29])
def test_split_between_docker_and_host_local_never_overlaps(prefix4):
    plan = plan_of(2, clusters=("10.60.0.0/16",), prefix4=prefix4)
    cfg = runtime_config(plan, "node2", ["docker", "cni"], mtu=1450)
    block = netaddr.IPNetwork(plan["nodes"]["node2"]["pod_cidrs"][0])
    docker = netaddr.IPNetwork(cfg["docker"]["fixed-cidr"])
    (rng,) = cfg["cni"]["plugins"][0]["ipam"]["ranges"][0]
    start, end = netaddr.IPAddress(rng["rangeStart"]), netaddr.IPAddress(rng["rangeEnd"])
    assert docker in block and docker.prefixlen == prefix4 + 1 and docker.last == block.last
    assert block.first + 2 == int(start) and int(end) < docker.first
    assert rng["gateway"] == str(block.network + 1)
    assert cfg["docker"] == {"bridge": "cbr0", "iptables": False, "ip-masq": False,
                             "fixed-cidr": str(docker), "mtu": 1450}


def test_single_runtime_gets_the_whole_block():
    plan = plan_of(1, clusters=("10.60.0.0/16",))
    assert runtime_config(plan, "node1", ["docker"])["docker"]["fixed-cidr"] == "10.60.0.0/24"
    cni = runtime_config(plan, "node1", ["cni"])
    assert cni["docker"] is None
    assert cni["cni"]["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.60.0.0/24", "gateway": "10.60.0.1"}]]
    assert [p["type"] for p in cni["cni"]["plugins"]] == ["bridge", "portmap", "loopback"]
    bridge = cni["cni"]["plugins"][0]
    assert bridge["isGateway"] is True and bridge["ipMasq"] is False and bridge["bridge"] == "cbr0"


def test_dual_stack_cni_gets_the_whole_ipv6_block_and_docker_stays_ipv4():
    plan = plan_of(1, clusters=("10.60.0.0/16", "fd00:60::/56"), v6=True)
    cfg = runtime_config(plan, "node1", ["docker", "cni"])
    ranges = cfg["cni"]["plugins"][0]["ipam"]["ranges"]
    assert ranges[1] == [{"subnet": "fd00:60::/64", "gateway": "fd00:60::1"}]
    assert not {"ipv6", "fixed-cidr-v6"} & set(cfg["docker"])
    assert cfg["docker"]["fixed-cidr"] == "10.60.0.128/25"


def test_split_too_small_and_docker_without_ipv4_are_errors():
    plan = plan_of(1, clusters=("10.60.0.0/16",), prefix4=30)
    with pytest.raises(PlanError) as info:
        runtime_config(plan, "node1", ["docker", "cni"])
    assert "host node1" in str(info.value) and "/30" in str(info.value) and "/29 or shorter" in str(info.value)
    plan6 = make_plan(PlanConfig(cluster_cidrs=["fd00:60::/56"]), [NodeInput("x", node_ip="fd40::1")]).as_dict()
    with pytest.raises(PlanError) as info:
        runtime_config(plan6, "x", ["docker"])
    assert "needs an IPv4 pod subnet" in str(info.value)
    with pytest.raises(PlanError):
        runtime_config(plan, "node1", ["rkt"])


def test_masquerade_exceptions_fit_the_fabric():
    plan = make_plan(PlanConfig(cluster_cidrs=["10.60.0.0/16"]),
                     [NodeInput("a", node_ip="192.168.7.10/24"), NodeInput("b", node_ip="192.168.7.11/24")]).as_dict()
    l2 = set(nonmasquerade_cidrs(plan, fabric="l2_routes")[4])
    assert l2 == {"10.60.0.0/16", "169.254.0.0/16", "192.168.7.10/31"}      # the two node addresses, merged
    assert "192.168.7.0/24" not in l2
    routed = set(nonmasquerade_cidrs(plan, fabric="router")[4])
    assert routed == {"10.60.0.0/16", "169.254.0.0/16", "192.168.7.0/24"}
    assert set(nonmasquerade_cidrs(plan, fabric="l2_bridge")[4]) == routed
    gce = set(nonmasquerade_cidrs(plan, ["100.64.0.0/10"], fabric="gce", fabric_cidrs=["10.128.0.0/9"])[4])
    assert gce == {"10.60.0.0/16", "169.254.0.0/16", "10.128.0.0/9", "100.64.0.0/10"}
