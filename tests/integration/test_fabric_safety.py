# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The fabric's side of a cluster's life, on a lab (named nodes, a /26 node prefix, a routed and a Compute Engine
fabric): teardown removes the routers' and the Compute Engine routes and needs no valid plan; leaving a fabric
removes its routes in the same run; a fabric with nobody to carry it is refused before any node changes; nodes that
left the inventory are named; a clean run prints no warning; teardown keeps a bridge it has no record of.

The routers' state is read from the lab router namespace's own route table; the Compute Engine routes from the local
stand-in of the API (tests/lib/gce_standin.py), which programs the same router namespace as the VPC would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import pytest
import yaml

from lib.labtools import BIN, REPO, Lab, in_ns, new_lab, run
from lib.nodestate import assert_same, node_state, record_path, torn_down, unchanged

PREFIX = "pfs"
CLUSTER = "10.66.0.0/20"
SUBNET = "172.25.14.0/24"
PROJECT = "podnet-lab"
TOKEN = "podnet-test-token"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("fs") / "lab", request, node_names=["oak", "elm"],
                   lab_vars={"podnet_lab_subnet": SUBNET,
                             "podnet_lab_external_cidr": "198.18.14.0/24",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": [CLUSTER],
                                                           "podnet_node_prefix_ipv4": 26,
                                                           "podnet_runtimes": ["cni"]}})
    spec.build()
    return spec


@pytest.fixture(scope="module")
def pristine(lab: Lab) -> Dict[str, Dict[str, str]]:
    return {n: node_state(lab, n) for n in lab.nodes}


def router(lab: Lab) -> str:
    return "%s-router" % lab.name


def router_routes(lab: Lab) -> List[str]:
    """The lab router's routes of the collection's protocol (its own table, read in its namespace)."""
    out = in_ns(router(lab), "ip", "-4", "route", "show", "proto", "158").stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def node_routes(lab: Lab, node: str) -> List[str]:
    out = in_ns(node, "ip", "-4", "route", "show", "proto", "158").stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def inventory(lab: Lab, name: str, routers: bool = False, group_vars: Optional[Dict[str, Any]] = None,
              drop: Optional[List[str]] = None, host_vars: Optional[Dict[str, Dict[str, Any]]] = None) -> Path:
    """The lab's inventory with its own state file, the router in podnet_routers (``routers``), more variables
    (of the group, of a host)."""
    return lab.inventory(name, drop=drop or (), group_vars=group_vars, host_vars=host_vars,
                         routers=[router(lab)] if routers else [], state_file="podnet_state.yml")


def play(name: str, inv: Path, *args: str, check: bool = True, **extra: Any) -> subprocess.CompletedProcess:
    argv = [str(BIN / "ansible-playbook"), "podnet.cluster.%s" % name, "-i", str(inv)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    return run(argv + list(args), check=check)


def state(lab: Lab) -> Dict[str, List[str]]:
    return yaml.safe_load((lab.inventory_dir / "podnet_state.yml").read_text())["nodes"]


def fabrics(lab: Lab) -> Set[Optional[str]]:
    """The fabric of each node's record (/etc/podnet/node.json in its upper layer), None for a node without one."""
    found: Set[Optional[str]] = set()
    for n in lab.nodes:
        path = record_path(lab, n)
        found.add(json.loads(path.read_text())["document"].get("fabric") if path.exists() else None)
    return found


def cleared(lab: Lab, pristine: Dict[str, Dict[str, str]]) -> None:
    """The lab without the cluster (``torn_down``: nodes as built, no pod route on the router), with a teardown
    (the routed inventory's, which also cleans the router) only where it is not: the tests that start so follow
    one that ended with a teardown."""
    def on_the_router() -> str:
        routes = router_routes(lab)
        return "the pod routes %s on the router" % routes if routes else ""
    torn_down(lab, pristine, teardown=lambda: play("teardown", inventory(lab, "routed", routers=True)),
              elsewhere=on_the_router)


def test_a_clean_run_of_each_fabric_says_nothing_twice_and_warns_of_nothing(lab: Lab, pristine):
    """No "could not match podnet_routers" (nor any other warning) on a clean run, with and without routers; the
    second run changes nothing, names no task twice and waits for nothing. (The clean run of l2_routes with the
    router in podnet_routers is the next test's second l2_routes run.)"""
    plain, routed = inventory(lab, "plain"), inventory(lab, "routed", routers=True)
    for inv, fabric in ((plain, "l2_routes"), (routed, "router")):
        proc = play("site", inv, podnet_fabric=fabric)
        out = proc.stdout + proc.stderr
        assert "[WARNING]" not in out, out[-4000:]
        again = play("site", inv, podnet_fabric=fabric)
        assert unchanged(again) and "[WARNING]" not in again.stdout + again.stderr, again.stdout[-4000:]
        names = re.findall(r"^TASK \[(.*)\] \*+$", again.stdout, re.M)
        assert names and len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
        assert "waited" not in again.stdout, again.stdout[-4000:]
    # No teardown: the next test starts from the lab on the router fabric, where this one leaves it.


def on_fabric(lab: Lab, pristine, inv: Path, fabric: str) -> None:
    """Every node converged on ``fabric``, with a converge only where the lab is not so (the test before leaves it
    so: run alone, a test converges from nothing)."""
    if fabrics(lab) != {fabric}:
        cleared(lab, pristine)
        play("site", inv, podnet_fabric=fabric)


def test_router_routes_go_when_the_cluster_leaves_the_fabric(lab: Lab, pristine):
    routed = inventory(lab, "routed", routers=True)
    on_fabric(lab, pristine, routed, "router")
    held = sorted(c for n in lab.nodes for c in state(lab)[n])
    assert router_routes(lab) == held
    assert all(node_routes(lab, n) == [] for n in lab.nodes)

    # router -> l2_routes, the router still in podnet_routers: its routes go in the same run
    play("site", routed, podnet_fabric="l2_routes")
    assert router_routes(lab) == [], "the router kept the routes of a fabric the cluster left"
    for n in lab.nodes:
        assert node_routes(lab, n) == sorted(c for m in lab.nodes if m != n for c in state(lab)[m])
    # and the clean run of l2_routes with the router in podnet_routers (test_a_clean_run_of_each_fabric_...)
    again = play("site", routed, podnet_fabric="l2_routes")
    assert unchanged(again), again.stdout[-4000:]
    assert "[WARNING]" not in again.stdout + again.stderr, "a clean run of l2_routes with routers warned:\n%s" \
        % (again.stdout + again.stderr)[-4000:]
    # No teardown: the next test starts from the lab converged on l2_routes, where this one leaves it.


def test_a_fabric_with_nobody_to_carry_it_is_refused_before_any_change(lab: Lab, pristine):
    """Two nodes, two fabrics with nobody to carry them, in one run (each case named in its assertions): oak on
    the router fabric without a host in podnet_routers, elm on gce without podnet_gce_project and a zone. Refused
    at the run's first task; the nodes keep their l2_routes routes."""
    on_fabric(lab, pristine, inventory(lab, "plain"), "l2_routes")
    oak, elm = lab.nodes
    before = {n: node_state(lab, n) for n in lab.nodes}
    assert all(node_routes(lab, n) for n in lab.nodes), "l2_routes gave the nodes no peer routes"
    nobody = inventory(lab, "nobody", host_vars={oak: {"podnet_fabric": "router"}, elm: {"podnet_fabric": "gce"}})
    proc = play("site", nobody, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "podnet_routers" in out and "podnet_fabric is router" in out, "router without routers:\n%s" % out[-3000:]
    assert "podnet_gce_project" in out and "podnet_gce_zone" in out, "gce without a project:\n%s" % out[-3000:]
    assert "Traceback" not in out
    for n in lab.nodes:
        assert_same(before[n], node_state(lab, n), "a refused run (router without routers, gce without a project) "
                    "changed %s" % n)
    # the refusal is the run's first task: no node was asked anything
    assert "Check every node's variables" in out.split("fatal:", 1)[0].rsplit("TASK [", 1)[-1], out[-3000:]
    # No teardown: the next test converges the router fabric from here.


def test_router_routes_go_with_teardown_which_needs_no_valid_plan(lab: Lab, pristine):
    """Teardown removes the router's pod routes; an exhausted cluster network or a node gone from the inventory
    does not block it; without a record it keeps the operator's bridge. One teardown of each kind, in turn (each
    case named in its assertions):

    * "node gone": elm gone from the inventory, oak is torn down from its record;
    * "no record": then an operator's bridge cbr0 on oak, which has no record: the teardown keeps it, and says so;
    * "exhausted plan": that teardown runs with one /26 for two nodes (no plan is possible: site says so);
    * "router": that teardown removes every pod route of the router, elm is as before; a second changes nothing.
    """
    routed = inventory(lab, "routed", routers=True)
    oak, elm = lab.nodes
    # back to the router fabric from l2_routes (where the tests before leave the lab; run alone, from nothing)
    if fabrics(lab) != {"router"}:
        play("site", routed, podnet_fabric="router")
    held = sorted(c for n in lab.nodes for c in state(lab)[n])
    assert router_routes(lab) == held
    check = play("teardown", routed, "--check", podnet_fabric="router")
    assert router_routes(lab) == held, "teardown --check changed the router"
    section = check.stdout.split("Remove the pod routes from the router", 1)[-1].split("TASK [", 1)[0]
    assert "changed: [%s]" % router(lab) in section, check.stdout[-3000:]

    # node gone: the one still in the inventory is torn down from its record
    proc = play("teardown", inventory(lab, "no-elm", drop=[elm]), check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert_same(pristine[oak], node_state(lab, oak), "node gone: teardown left oak")

    # one /26 for two nodes: no plan is possible (the site run says so, and changes nothing)
    tiny = {"podnet_cluster_cidrs": ["10.66.0.0/26"], "podnet_allow_readdress": True}
    refused = play("site", routed, check=False, podnet_fabric="router", **tiny)
    assert refused.returncode != 0, "exhausted plan: site did not refuse"
    assert not record_path(lab, oak).exists()
    in_ns(oak, "ip", "link", "add", "cbr0", "type", "bridge")
    try:
        in_ns(oak, "ip", "addr", "add", "192.168.77.1/24", "dev", "cbr0")
        before = node_state(lab, oak)
        proc = play("teardown", routed, check=False, podnet_fabric="router", **tiny)
        assert proc.returncode == 0, "exhausted plan: %s" % (proc.stdout + proc.stderr)[-4000:]
        assert "no record" in proc.stdout + proc.stderr, "no record: %s" % proc.stdout[-3000:]
        assert_same(before, node_state(lab, oak), "no record: teardown without a record changed the operator's bridge")
        assert router_routes(lab) == [], "router: teardown left the pod routes on the router"
        assert_same(pristine[elm], node_state(lab, elm), "teardown (exhausted plan, router) left %s different" % elm)
    finally:
        in_ns(oak, "ip", "link", "del", "cbr0")
    assert_same(pristine[oak], node_state(lab, oak), "no record: the lab is not back")
    assert unchanged(play("teardown", routed, podnet_fabric="router")), "router: a second teardown changed something"


def test_departed_nodes_are_named_with_their_blocks_and_how_to_release_them(lab: Lab, pristine):
    cleared(lab, pristine)
    path = lab.inventory_dir / "podnet_state.yml"
    path.write_text("version: 1\nnodes:\n  %s-birch: [10.66.0.0/26]\n  %s-ash: [10.66.0.192/26]\n"
                    % (lab.name, lab.name))
    plain = inventory(lab, "plain", group_vars={"podnet_cluster_cidrs": ["10.66.0.0/24"]})
    try:
        proc = play("site", plain, "--check")
        out = proc.stdout + proc.stderr
        for needle in ("%s-birch (10.66.0.0/26)" % lab.name, "%s-ash (10.66.0.192/26)" % lab.name,
                       "podnet_release_nodes", "podnet_plan_prune"):
            assert needle in out, "%r not said:\n%s" % (needle, out[-4000:])
        # three /26 blocks: two held by departed nodes, two nodes to place -> exhausted, the holders named
        small = inventory(lab, "small", group_vars={"podnet_cluster_cidrs": ["10.66.0.0/25"]})
        path.write_text("version: 1\nnodes:\n  %s-birch: [10.66.0.0/26]\n" % lab.name)
        proc = play("site", small, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        for needle in ("1 short", "%s-birch (10.66.0.0/26)" % lab.name, "podnet_release_nodes: [%s-birch]" % lab.name):
            assert needle in out, "%r not in the error:\n%s" % (needle, out[-4000:])
        for n in lab.nodes:
            assert_same(pristine[n], node_state(lab, n), "a refused run changed %s" % n)
        released = play("site", small, "--check", podnet_release_nodes=["%s-birch" % lab.name])
        assert "podnet_release_nodes" not in released.stdout.split("PLAY RECAP")[0].split("Plan the pod network")[-1]
    finally:
        path.unlink(missing_ok=True)


# ---- the gce fabric, through the local stand-in of the Compute Engine API (it programs the lab router)

@pytest.fixture
def standin(lab: Lab, tmp_path):
    state_dir = tmp_path / "gce"
    subprocess.run([sys.executable, str(REPO / "tests/lib/gce_standin.py"), "serve", "--state-dir", str(state_dir),
                    "--project", PROJECT, "--token", TOKEN, "--lab-inventory", str(lab.hosts_yml),
                    "--netns", router(lab), "--background"], check=True, timeout=60)
    try:
        yield (state_dir / "endpoint").read_text().strip()
    finally:
        subprocess.run([sys.executable, str(REPO / "tests/lib/gce_standin.py"), "stop", "--state-dir",
                        str(state_dir)], check=False, timeout=60)


def gce_routes(endpoint: str) -> List[str]:
    """destRange of every route in the stand-in's project (the API's own list call)."""
    import urllib.request
    req = urllib.request.Request(endpoint + "projects/%s/global/routes" % PROJECT,
                                 headers={"Authorization": "Bearer %s" % TOKEN})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return sorted(r["destRange"] for r in json.load(resp).get("items") or [])


def gce_vars(endpoint: str) -> Dict[str, Any]:
    return {"podnet_gce_project": PROJECT, "podnet_gce_network": "default", "podnet_gce_zone": "lab-a",
            "podnet_gce_network_cidrs": [SUBNET], "podnet_gce_auth_kind": "accesstoken",
            "podnet_gce_access_token": TOKEN, "podnet_gce_api_endpoint": endpoint}


def test_gce_routes_go_when_the_cluster_leaves_gce_and_with_teardown(lab: Lab, pristine, standin):
    cleared(lab, pristine)
    inv = inventory(lab, "gce", group_vars=gce_vars(standin))
    play("site", inv, podnet_fabric="gce")
    held = sorted(c for n in lab.nodes for c in state(lab)[n])
    assert gce_routes(standin) == held and router_routes(lab) == held

    # gce -> l2_routes: the Compute Engine routes (and so the router's) go in the same run
    play("site", inv, podnet_fabric="l2_routes")
    assert gce_routes(standin) == [], "leaving gce left its Compute Engine routes"
    assert router_routes(lab) == []
    assert all(node_routes(lab, n) for n in lab.nodes)

    # a node record says gce, and the project is gone from the inventory: refused, nothing changes
    play("site", inv, podnet_fabric="gce")
    assert gce_routes(standin) == held
    before = {n: node_state(lab, n) for n in lab.nodes}
    bare = inventory(lab, "bare")
    proc = play("site", bare, check=False, podnet_fabric="l2_routes")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "podnet_gce_project" in out and lab.nodes[0] in out, out[-3000:]
    for n in lab.nodes:
        assert_same(before[n], node_state(lab, n), "a refused run changed %s" % n)
    assert gce_routes(standin) == held

    # teardown: the Compute Engine routes go, the nodes are as before the first converge
    play("teardown", inv, podnet_fabric="gce")
    assert gce_routes(standin) == [] and router_routes(lab) == []
    for n in lab.nodes:
        assert_same(pristine[n], node_state(lab, n), "teardown left %s" % n)
