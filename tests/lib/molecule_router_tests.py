# SPDX-License-Identifier: Apache-2.0
"""Tests of the router fabric's scenario (molecule/router, a dual-stack lab): the
lab router routes every node's pod subnets via the node, in both families; nodes hold no peer routes; verify
passes in every family of the plan. The scenario's test_router.py imports them, so pytest collects them there,
with that scenario's fixtures."""

from __future__ import annotations

import ipaddress
import json

import yaml

from lib.molecule_scenario import assert_three_rules, node_routes_wanted, routes_of, run_verify
from lib.netns_backend import lab_hosts


def test_the_router_routes_every_pod_subnet_via_its_node(inventory, node_vars, state):
    lab = yaml.safe_load(inventory.read_text())["all"]["children"]["podnet_lab"]
    (router,) = lab["children"]["podnet_routers"]["hosts"]
    assert routes_of(lab_hosts(str(inventory))[router]) == node_routes_wanted(state, node_vars)


def test_nodes_hold_no_peer_routes_and_forward(nodes):
    for name, host in nodes.items():
        assert routes_of(host) == set(), name
        assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1", name
        record = json.loads(host.file("/etc/podnet/node.json").content_string)
        assert record["document"]["fabric"] == "router" and record["document"]["routes"]["routes"] == []


def test_verify_playbook_passes(inventory, nodes, state):
    state_file = inventory.parent / ".podnet_state.yml"
    before = state_file.read_bytes()
    families = sorted({ipaddress.ip_network(c).version for c in next(iter(state["nodes"].values()))})
    assert_three_rules(run_verify(inventory), len(nodes), families)
    assert state_file.read_bytes() == before
