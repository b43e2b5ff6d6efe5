# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The controller's side of the fabric's safety: what each fabric needs (fabric_errors), the teardown document
built without a plan, the cluster-wide checks before any node is asked, departed nodes named, the router's routes
limited to the nodes of fabric router."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.podnet.cluster.plugins.filter.router_routes import router_routes
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import fabric_errors, teardown_document
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import (
    NodeInput,
    PlanConfig,
    PlanError,
    departed_message,
    make_plan,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_inputs import config_errors

PLAN = {"nodes": {"a": {"node_ips": ["10.0.0.1"], "pod_cidrs": ["10.244.0.0/24"]},
                  "b": {"node_ips": ["10.0.0.2"], "pod_cidrs": ["10.244.1.0/24"]}}}


def test_router_fabric_with_nobody_in_the_group_names_the_group_and_the_hosts():
    errors = fabric_errors({"a": "router", "b": "router"}, [], "podnet_routers")
    assert len(errors) == 1
    assert "hosts a, b" in errors[0] and "podnet_routers" in errors[0] and "has no host" in errors[0]
    assert fabric_errors({"a": "router"}, ["r1"]) == []
    assert fabric_errors({"a": "l2_routes"}, []) == []
    assert "my_routers" in fabric_errors({"a": "router"}, [], "my_routers")[0]


def test_gce_needs_a_project_and_a_zone_for_every_node():
    errors = fabric_errors({"a": "gce", "b": "gce"}, [], gce_vars={"a": {"podnet_gce_project": "p",
                                                                         "podnet_gce_zone": "z"},
                                                                   "b": {}})
    assert any("host b" in e and "podnet_gce_project" in e for e in errors)
    assert any("host b" in e and "podnet_gce_zone" in e for e in errors)
    assert not any("host a" in e for e in errors)
    ok = fabric_errors({"a": "gce"}, [], gce_vars={"a": {"podnet_gce_project": "p",
                                                         "podnet_gce_instance": "zones/z/instances/vm"}})
    assert ok == []


def test_teardown_document_needs_no_plan_and_names_only_what_is_ours():
    doc = teardown_document("n1", {"bridge": "pbr3", "route_protocol": "159", "runtimes": ["cni"]})
    assert doc["node"] == "n1" and doc["bridge"] == {"name": "pbr3", "addresses": [], "mtu": None,
                                                     "mtu_from_address": None}
    assert doc["owned_cidrs"] == [] and doc["pod_cidrs"] == [] and doc["routes"]["protocol"] == 159
    assert doc["cni"]["file"] == "/etc/cni/net.d/10-podnet.conflist" and doc["docker"] is None
    assert sorted((i["ip_version"], i["table"], i["chains"][0]["name"]) for i in doc["iptables"]) == [
        (4, "filter", "PODNET-FORWARD"), (4, "nat", "PODNET-MASQ"),
        (6, "filter", "PODNET-FORWARD"), (6, "nat", "PODNET-MASQ")]
    with pytest.raises(PlanError) as info:
        teardown_document("n1", {"bridge": "br0;reboot"})
    assert "host n1" in str(info.value) and "podnet_bridge" in str(info.value)


@pytest.mark.parametrize("cidr,words", [
    ("10.200.0.1/21", "podnet_cluster_cidrs[0]: 10.200.0.1/21 has host bits set"),
    ("10.200.0.0/33", "podnet_cluster_cidrs[0]: '10.200.0.0/33' is not a network"),
])
def test_config_errors_need_no_node(cidr, words):
    errors = config_errors(PlanConfig(cluster_cidrs=[cidr]))
    assert any(words in e for e in errors), errors
    assert config_errors(PlanConfig(cluster_cidrs=["10.200.0.0/21"])) == []


def test_departed_nodes_are_named_with_their_blocks_and_the_release_variables():
    text = departed_message({"node10": ["10.244.9.0/24"], "node2": ["10.244.1.0/24", "fd00::/64"]})
    assert text.startswith("2 node(s)")
    assert "node2 (10.244.1.0/24, fd00::/64), node10 (10.244.9.0/24)" in text
    assert "podnet_release_nodes: [node2, node10]" in text and "podnet_plan_prune: true" in text


def test_exhaustion_names_the_departed_holders():
    state = {"version": 1, "nodes": {"gone": ["10.9.0.0/26"]}}
    nodes = [NodeInput(name=n, node_ip="172.31.0.%d/24" % (10 + i)) for i, n in enumerate(["n1", "n2"])]
    with pytest.raises(PlanError) as info:
        make_plan(PlanConfig(cluster_cidrs=["10.9.0.0/25"], node_prefix_ipv4=26, keep_absent=True), nodes, state)
    text = "\n".join(info.value.errors)
    assert "1 short" in text and "gone (10.9.0.0/26)" in text and "podnet_release_nodes: [gone]" in text
    plan = make_plan(PlanConfig(cluster_cidrs=["10.9.0.0/25"], node_prefix_ipv4=26, keep_absent=True,
                                release=["gone"]), nodes, state)
    assert sorted(c for n in plan.nodes.values() for c in n.pod_cidrs) == ["10.9.0.0/26", "10.9.0.64/26"]


def test_router_routes_only_for_the_nodes_of_fabric_router():
    assert len(router_routes(PLAN)) == 2
    assert router_routes(PLAN, {"a": "router", "b": "router"}) == router_routes(PLAN)
    assert router_routes(PLAN, {"a": "router", "b": "l2_routes"}) == ["10.244.0.0/24 via 10.0.0.1 peer a"]
    assert router_routes(PLAN, {"a": "l2_routes", "b": "gce"}) == []
    with pytest.raises(AnsibleFilterError):
        router_routes(PLAN, ["a"])
