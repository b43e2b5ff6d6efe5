# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Lifecycle: every setting change but the runtimes converges with no leftovers (the runtimes are
test_lifecycle_runtimes.py), and the router fabric, on a lab of its own (lib/lifecycle.py)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from lib.labtools import BIN, Lab, run
from lib.lifecycle import CLUSTERS, LAST_ROUND, Case, build_lab, converge_round, is_at
from lib.nodestate import playbook, unchanged
from lib.netns_backend import lab_hosts

PREFIX = "ply"
ROUTER_GROUP = "podnet_lab_router"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    return build_lab(PREFIX, tmp_path_factory, request)


# Three rounds instead of one per case (each round: a teardown and four converges). The first holds three cases on
# the two nodes: each node's state is compared on its own; red's two changes are in different places (the bridge,
# the FORWARD rules and the runtime files that name it; the nat chain, which names no bridge). IPv4 only and the
# routed fabric change every node (and the fabric the masquerade exemptions): a round each.
ROUNDS = [
    ("renamed bridge, extra non-masquerade network, masquerade off",
     [Case("renamed bridge", [{"podnet_bridge": "pbr7"}], "red"),
      Case("extra non-masquerade network", [{"podnet_nonmasquerade_cidrs": ["192.168.240.0/20"]}], "red"),
      Case("masquerade off", [{"podnet_masquerade": False}], "green")]),
    ("IPv4 only", [Case("IPv4 only", [{"podnet_cluster_cidrs": CLUSTERS[:1], "podnet_allow_readdress": True}])]),
    # the lab router (group podnet_lab_router) carries the routes: a router fabric with nobody is refused
    ("routed fabric (no peer routes)",
     [Case("routed fabric (no peer routes)", [{"podnet_fabric": "router", "podnet_router_group": ROUTER_GROUP}])]),
]


@pytest.mark.parametrize("label,cases", ROUNDS, ids=[r[0] for r in ROUNDS])
def test_setting_change_converges_without_leftovers(lab: Lab, label, cases):
    """default -> each change in turn -> default; every state equals what a fresh converge with those settings
    gives (converged after a teardown): nothing an earlier setting made is left behind."""
    converge_round(lab, cases)


def test_router_fabric_routes_on_the_router_and_verify_passes(lab: Lab):
    """podnet_fabric=router: the lab router holds one route per node pod subnet, the nodes none; verify passes.
    After the routed fabric round the lab is there already (from l2_routes, routed, idempotent): the runs of
    this test's own inventory (the router in podnet_routers) must then find nothing to change."""
    hosts = lab_hosts(str(lab.hosts_yml))
    router = "%s-router" % lab.name
    last = LAST_ROUND.get(lab.name)
    routed_already = last is not None and last[0] == ROUNDS[-1][0] and is_at(lab, last[1])
    if not routed_already:
        playbook(lab, "site")                  # l2_routes first: its peer routes must go
    inv = yaml.safe_load(lab.hosts_yml.read_text())
    inv["all"]["children"]["podnet_lab"]["children"]["podnet_routers"] = {"hosts": {router: {}}}
    inv["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]["vars"]["podnet_state_file"] = str(
        lab.inventory_dir / ".podnet_state.yml")
    routed = lab.inventory_dir / "routed.yml"
    routed.write_text(yaml.safe_dump(inv))

    def playbook_routed(*args, **extra):
        argv = [str(BIN / "ansible-playbook"), "podnet.cluster.%s" % args[0], "-i", str(routed)]
        return run(argv + ["-e", json.dumps(dict(extra, podnet_fabric="router"))] + list(args[1:]))

    if not routed_already:
        playbook_routed("site")
    state = yaml.safe_load((lab.inventory_dir / ".podnet_state.yml").read_text())["nodes"]
    for family, flag in ((4, "-4"), (6, "-6")):
        got = {r["dst"] for r in json.loads(hosts[router].check_output("ip %s -json route show proto 158" % flag))}
        assert got == {c for n in lab.nodes for c in state[n] if (":" in c) == (family == 6)}
        for n in lab.nodes:
            assert hosts[n].check_output("ip %s route show proto 158" % flag).strip() == ""
    assert unchanged(playbook_routed("site"))
    verify = playbook_routed("verify")
    assert "PASSED" in verify.stdout, verify.stdout[-4000:]
    routed.unlink()
