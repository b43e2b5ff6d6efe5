# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The node engine refuses routes and local addresses it does not own inside a cluster network.

The decision over the decoded ``ip -json`` answers (the lab test test_bad_inputs.py runs it on a real kernel).
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils.engine.node import foreign_in_cluster, plan_node
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError


class CannedRunner(object):
    """Answers ``ip ... -json route show`` / ``addr show`` from canned data; anything else fails the test."""

    check_mode = True

    def __init__(self, routes4, addrs, routes6=()):
        self.answers = {"-4": list(routes4), "-6": list(routes6)}
        self.addrs = list(addrs)

    def which(self, name):
        return "/sbin/" + name

    def run(self, argv, data=None):
        if argv[-2:] == ["addr", "show"]:
            return 0, json.dumps(self.addrs), ""
        if "route" in argv:
            fam = [a for a in argv if a in ("-4", "-6")][0]
            return 0, json.dumps(self.answers[fam]), ""
        raise AssertionError("unexpected command %r" % (argv,))


DOC = {"version": 1, "node": "n1", "state_dir": "/nonexistent/podnet", "lib_dir": "/nonexistent/lib",
       "bridge": {"name": "cbr0", "addresses": ["10.91.0.1/25"]}, "owned_cidrs": ["10.91.0.0/17"],
       "sysctl": {"file": "/nonexistent/sysctl.conf", "settings": {}}, "iptables": [],
       "routes": {"protocol": 158, "table": "main", "routes": []}}
OURS = [
    {"dst": "default", "gateway": "172.27.3.1", "dev": "eth0", "protocol": 4},
    {"dst": "172.27.3.0/24", "dev": "eth0", "protocol": 2, "scope": "link"},
    {"dst": "10.91.0.0/25", "dev": "cbr0", "protocol": 2, "scope": "link"},          # our bridge's own
    {"dst": "10.91.0.128/25", "gateway": "172.27.3.12", "dev": "eth0", "protocol": 158},
    {"dst": "10.0.0.0/8", "gateway": "172.27.3.1", "dev": "eth0", "protocol": 4},     # holds, not inside
]
ADDRS = [{"ifname": "eth0", "addr_info": [{"local": "172.27.3.11", "prefixlen": 24}]},
         {"ifname": "cbr0", "addr_info": [{"local": "10.91.0.1", "prefixlen": 25}]}]


def test_only_ours_inside_the_cluster_is_fine():
    assert foreign_in_cluster(CannedRunner(OURS, ADDRS), DOC) == []


def test_a_route_of_an_old_protocol_and_an_old_bridge_are_ours():
    routes = OURS + [{"dst": "10.91.1.0/25", "gateway": "172.27.3.13", "dev": "eth0", "protocol": 77},
                     {"dst": "10.91.2.0/25", "dev": "oldbr", "protocol": 2, "scope": "link"}]
    addrs = ADDRS + [{"ifname": "oldbr", "addr_info": [{"local": "10.91.2.1", "prefixlen": 25}]}]
    old = {"bridge": {"name": "oldbr"}, "routes": {"protocol": 77}}
    assert foreign_in_cluster(CannedRunner(routes, addrs), DOC, old) == []


def test_foreign_route_and_local_address_inside_the_cluster_are_named():
    routes = OURS + [{"dst": "10.91.96.0/24", "gateway": "172.27.3.1", "dev": "eth0", "protocol": 4}]
    addrs = ADDRS + [{"ifname": "wg0", "addr_info": [{"local": "10.91.100.5", "prefixlen": 32}]}]
    problems = foreign_in_cluster(CannedRunner(routes, addrs), DOC)
    assert len(problems) == 2
    assert "10.91.96.0/24 via 172.27.3.1 dev eth0 proto 4" in problems[0] and "10.91.0.0/17" in problems[0]
    assert "10.91.100.5/32 on wg0" in problems[1] and "10.91.0.0/17" in problems[1]
    with pytest.raises(EngineError) as err:
        plan_node(CannedRunner(routes, addrs), DOC)
    assert "node n1" in err.value.msg and "10.91.96.0/24" in err.value.msg and "wg0" in err.value.msg
    assert "podnet_cluster_cidrs" in err.value.msg
