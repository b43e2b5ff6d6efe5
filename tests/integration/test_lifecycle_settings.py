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
from lib.lifecycle import TRANSITIONS, build_lab, converge_through
from lib.nodestate import playbook, unchanged
from lib.netns_backend import lab_hosts

PREFIX = "ply"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    return build_lab(PREFIX, tmp_path_factory, request)


SETTINGS = [t for t in TRANSITIONS if not t[0].startswith("runtimes")]


@pytest.mark.parametrize("label,changes", SETTINGS, ids=[t[0] for t in SETTINGS])
def test_setting_change_converges_without_leftovers(lab: Lab, label, changes):
    """default -> each change in turn -> default; every state equals what a fresh converge with those settings
    gives (converged after a teardown): nothing an earlier setting made is left behind."""
    converge_through(lab, label, changes)


def test_router_fabric_routes_on_the_router_and_verify_passes(lab: Lab):
    """podnet_fabric=router: the lab router holds one route per node pod subnet, the nodes none; verify passes."""
    hosts = lab_hosts(str(lab.hosts_yml))
    router = "%s-router" % lab.name
    playbook(lab, "site")                      # l2_routes first: its peer routes must go
    inv = yaml.safe_load(lab.hosts_yml.read_text())
    inv["all"]["children"]["podnet_lab"]["children"]["podnet_routers"] = {"hosts": {router: {}}}
    inv["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]["vars"]["podnet_state_file"] = str(
        lab.inventory_dir / ".podnet_state.yml")
    routed = lab.inventory_dir / "routed.yml"
    routed.write_text(yaml.safe_dump(inv))

    def playbook_routed(*args, **extra):
        argv = [str(BIN / "ansible-playbook"), "podnet.cluster.%s" % args[0], "-i", str(routed)]
        return run(argv + ["-e", json.dumps(dict(extra, podnet_fabric="router"))] + list(args[1:]))

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
