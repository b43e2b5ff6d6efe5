"""The lab's topology as data (plugins/module_utils/lab_topology.py): names, addresses, inventory."""

from __future__ import annotations

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils.lab_topology import (
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
