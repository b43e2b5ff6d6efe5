# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The "unchanged state" check: converge the same lab with two commits and compare every node's state.

    .venv/bin/python bench/compare_state.py [--fabric F]... OLD [NEW]   (needs root: namespaces; NEW: the work tree)

For each fabric (``--fabric``, repeatable; default: every one of FABRICS) and each side it checks the commit out
in a scratch git worktree (NEW may be "." for this work tree as it is), builds the same lab with that side's own
lab playbook (same lab name, nodes, networks: dual stack, both runtimes), runs that side's podnet.cluster.site
once with that fabric, takes every node's state with tests/lib/nodestate.py
(addresses, links, every route table, rules, iptables-save/ip6tables-save, forwarding, every file podnet.cluster
may write, by content, and the record's document) and removes the lab. It then prints the differences, node by
node, and exits 1 when there are any (2: not a commit, 3: a playbook failed).

The fabrics and their labs (FABRICS): l2_routes (one segment), router (one segment, the lab's router in
podnet_routers), l2_bridge (one segment, nodes served over SSH: the uplink moves detached from the connection),
vxlan (the routed lab: two segments, so the overlay crosses the router). The Compute Engine fabric is not among
them: it needs the API stand-in of the tests, and its node state is that of l2_routes (its routes are the
cloud's). A fabric whose site run fails on both sides is reported as such (exit 3).

Left out of the comparison, because they change with the code and not with the node's network: the engine
source copies the boot restore runs (/var/lib/podnet/lib). The kernel-made ifindexes and link-local addresses
are left out by nodestate itself.

Everything it makes is named podnet-cmp<pid> (namespaces, lab directory, /var/tmp/podnet-cmp<pid>) and removed at
the end, also after a failure. The machine's own network namespace is never touched: the lab lives in namespaces
(checked: it exits 4 if the namespace's snapshot differs afterwards).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / ".collections", REPO / "tests"):   # as tests/conftest.py: make setup links .collections
    sys.path.insert(0, str(_path))

from lib import nodestate, rootns  # noqa: E402
from lib.labtools import Lab  # noqa: E402

NAME = "podnet-cmp%d" % os.getpid()
WORK = Path("/var/tmp") / NAME
LAB_ROOT = "/var/tmp/podnet-lab/%s" % NAME
# Left out: they change with the code, not with the node's network.
CODE_FILES = ("var-lib/podnet/lib/",)
LAB_VARS = {
    "podnet_lab_subnet": "172.31.250.0/24",
    "podnet_lab_subnet_ipv6": "fd00:31:250::/64",
    "podnet_lab_external_cidr_ipv6": "fd00:203::/64",
    "podnet_lab_inventory_vars": {
        "podnet_cluster_cidrs": ["10.88.0.0/16", "fd00:88::/56"],
        "podnet_runtimes": ["cni", "docker"],
    },
}
# fabric: (more lab variables, more inventory variables, the lab's router in podnet_routers)
FABRICS = {
    "l2_routes": ({}, {}, False),
    "router": ({}, {"podnet_fabric": "router"}, True),
    "l2_bridge": ({"podnet_lab_ssh": True}, {"podnet_fabric": "l2_bridge"}, False),
    "vxlan": ({"podnet_lab_segments": 2}, {"podnet_fabric": "vxlan"}, False),
}


def log(msg: str) -> None:
    print("[compare] %s" % msg, file=sys.stderr, flush=True)


def checkout(rev: str, where: Path) -> Path:
    """A tree of ``rev`` importable as podnet.cluster (and podnet.lab) ("." is this work tree itself)."""
    if rev == ".":
        tree = REPO
    else:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(where), rev], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tree = where
    link = tree / ".collections/ansible_collections/podnet/cluster"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to("../../..")
    lab = link.parent / "lab"  # podnet.lab, in lab/ once the lab became a collection of its own
    if (tree / "lab" / "galaxy.yml").exists() and not lab.is_symlink():
        lab.symlink_to("../../../lab")
    return tree


def lab_vars(fabric: str) -> Dict[str, Any]:
    more_lab, more_inventory, _routers = FABRICS[fabric]
    out = dict(LAB_VARS, **more_lab)
    out["podnet_lab_inventory_vars"] = dict(LAB_VARS["podnet_lab_inventory_vars"], **more_inventory)
    return out


def with_routers(lab: Lab) -> None:
    """The lab's inventory with the lab's router in podnet_routers (fabric router)."""
    data = yaml.safe_load(lab.hosts_yml.read_text())
    children = data["all"]["children"]["podnet_lab"]["children"]
    children["podnet_routers"] = {"hosts": {"%s-router" % lab.name: {}}}
    lab.hosts_yml.write_text(yaml.safe_dump(data))


def side(rev: str, label: str, fabric: str = "l2_routes") -> Dict[str, Dict[str, str]]:
    """Every node's state after ``rev``'s site run (``fabric``) on the lab built by ``rev``'s lab playbook."""
    tree = checkout(rev, WORK / ("tree-" + label))
    lab = Lab(name=NAME, root=LAB_ROOT, inventory_dir=WORK / ("inventory-" + label),
              nodes=["%s-node%d" % (NAME, i) for i in (1, 2, 3)], lab_vars=lab_vars(fabric), repo=tree)
    try:
        lab.playbook("present")
        if FABRICS[fabric][2]:
            with_routers(lab)
        log("%s (%s): lab built, running site (fabric %s)" % (label, rev, fabric))
        nodestate.playbook(lab, "site")
        states = {}
        for node in lab.nodes:
            snap = nodestate.node_state(lab, node)
            snap["files"] = without_code(snap["files"])
            states[node] = snap
        return states
    finally:
        lab.destroy()
        if tree != REPO:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def without_code(files: str) -> str:
    """nodestate's file lines ("PATH MODE SHA") without the copies of the collection's code."""
    return "".join(line + "\n" for line in files.splitlines() if not line.startswith(CODE_FILES))


def compare(old: Dict[str, Dict[str, str]], new: Dict[str, Dict[str, str]]) -> List[str]:
    out = []
    for node in sorted(set(old) | set(new)):
        a, b = old.get(node, {}), new.get(node, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append("%s: %s differs" % (node, key))
                out.extend(difflib.unified_diff((a.get(key) or "").splitlines(), (b.get(key) or "").splitlines(),
                                                "old", "new", lineterm="", n=1))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("old", help="commit of the state before")
    parser.add_argument("new", nargs="?", default=".", help="commit of the state after ('.': this work tree)")
    parser.add_argument("--save", metavar="FILE", help="also write both sides' snapshots to FILE (JSON)")
    parser.add_argument("--fabric", action="append", choices=sorted(FABRICS),
                        help="a fabric to compare (repeatable; default: every one)")
    args = parser.parse_args()
    fabrics = args.fabric or list(FABRICS)
    for rev in {args.old, args.new} - {"."}:
        if subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "-q", rev + "^{commit}"],
                          stdout=subprocess.DEVNULL, check=False).returncode != 0:
            parser.error("%s is not a commit of %s" % (rev, REPO))
    WORK.mkdir(parents=True, exist_ok=True)
    root_before = rootns.snapshot()
    saved, status = {}, 0
    try:
        for fabric in fabrics:
            try:
                old = side(args.old, "old", fabric)
                new = side(args.new, "new", fabric)
            except (pytest.fail.Exception, subprocess.TimeoutExpired) as exc:   # labtools.run: a playbook failed
                print(str(exc)[-6000:], file=sys.stderr)
                print("FAILED: fabric %s: a playbook failed" % fabric)
                status = max(status, 3)
                continue
            saved[fabric] = {"old": old, "new": new}
            keys = sorted(next(iter(new.values())))
            differences = compare(old, new)
            print("fabric %s: compared %d nodes, %d aspects each (%s)"
                  % (fabric, len(new), len(keys), ", ".join(keys)))
            if differences:
                print("\n".join(differences))
                print("DIFFERENT: fabric %s: %s and %s" % (fabric, args.old, args.new))
                status = max(status, 1)
            else:
                print("IDENTICAL: fabric %s: %s and %s" % (fabric, args.old, args.new))
            sys.stdout.flush()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
    root_changes = rootns.diff(root_before, rootns.snapshot())
    if root_changes:
        print("the machine's own network namespace changed:\n" + root_changes)
        return 4
    if args.save:
        Path(args.save).write_text(json.dumps(saved, indent=1, sort_keys=True))
    return status


if __name__ == "__main__":
    sys.exit(main())
