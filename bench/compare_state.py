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
vxlan (the routed lab: two segments, so the overlay crosses the router), gce (one segment; the fabric programs
the pod routes in the Compute Engine API). A fabric whose site run fails on either side is reported as such
(exit 3).

gce: the Compute Engine API is the tests' stand-in (tests/lib/gce_standin.py of this work tree, for both sides:
it is the "cloud", not the code under comparison), started on loopback before the lab is built, with one VM per
node (its name, zone lab-a, network default, the node's addresses, able to forward) and its hook programming the
lab router as the cloud's router. Besides every node's state it compares the cloud's route table after the site
run, as the pseudo-node "gce-api" with the aspect "routes": one line per route (name, destination, next hop,
priority, network, description, tags), sorted by name. Left out of it: a route's id and creationTimestamp (the
stand-in's counter and clock) and its selfLink (the project and name, both compared).

Left out of the comparison, because they change with the code and not with the node's network: the engine
source copies the boot restore runs (/var/lib/podnet/lib). The kernel-made ifindexes and link-local addresses
are left out by nodestate itself. The uplink snapshot of l2_bridge (etc/podnet/uplink-<bridge>.json) holds
MAC addresses, which the kernel draws at random for each new lab's veths (and the link-local addresses made
from them): its file line in "files" carries no checksum, and its content is compared as the aspect
"uplink-<bridge>.json" with every MAC address and every fe80:: address replaced by a numbered placeholder
(the same value, the same placeholder, so that "the bridge took the uplink's MAC" still compares).

Everything it makes is named podnet-cmp<pid> (namespaces, lab directory, /var/tmp/podnet-cmp<pid>) and removed at
the end, also after a failure. The machine's own network namespace is never touched: the lab lives in namespaces
(checked: it exits 4 if the namespace's snapshot differs afterwards).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
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
from lib.gce_standin import GceStandIn, NetnsRouteSync, lab_instances  # noqa: E402
from lib.labtools import Lab  # noqa: E402

NAME = "podnet-cmp%d" % os.getpid()
WORK = Path("/var/tmp") / NAME
LAB_ROOT = "/var/tmp/podnet-lab/%s" % NAME
# Left out: they change with the code, not with the node's network.
CODE_FILES = ("var-lib/podnet/lib/",)
# Compared by content with the kernel's random MACs (and the link-local addresses made of them) as placeholders.
UPLINK_SNAPSHOT = re.compile(r"^etc/podnet/(uplink-[^/]+\.json) ")
MAC = re.compile(r"\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b", re.I)
LINK_LOCAL = re.compile(r"\bfe80:[0-9a-f:]*", re.I)
GCE_PROJECT, GCE_TOKEN, GCE_ZONE, GCE_NETWORK = "podnet-lab", "podnet-cmp-token", "lab-a", "default"
CLOUD = "gce-api"   # the pseudo-node of the cloud's route table
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
    # the API endpoint is the stand-in's, known once it listens (side())
    "gce": ({}, {"podnet_fabric": "gce", "podnet_gce_project": GCE_PROJECT, "podnet_gce_network": GCE_NETWORK,
                 "podnet_gce_zone": GCE_ZONE, "podnet_gce_auth_kind": "accesstoken",
                 "podnet_gce_access_token": GCE_TOKEN,
                 "podnet_gce_network_cidrs": [LAB_VARS["podnet_lab_subnet"], LAB_VARS["podnet_lab_subnet_ipv6"]]},
            False),
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


def lab_vars(fabric: str, **more_inventory: Any) -> Dict[str, Any]:
    more_lab, fabric_inventory, _routers = FABRICS[fabric]
    out = dict(LAB_VARS, **more_lab)
    out["podnet_lab_inventory_vars"] = dict(LAB_VARS["podnet_lab_inventory_vars"], **fabric_inventory,
                                            **more_inventory)
    return out


def with_routers(lab: Lab) -> None:
    """The lab's inventory with the lab's router in podnet_routers (fabric router)."""
    data = yaml.safe_load(lab.hosts_yml.read_text())
    children = data["all"]["children"]["podnet_lab"]["children"]
    children["podnet_routers"] = {"hosts": {"%s-router" % lab.name: {}}}
    lab.hosts_yml.write_text(yaml.safe_dump(data))


def side(rev: str, label: str, fabric: str = "l2_routes") -> Dict[str, Dict[str, str]]:
    """Every node's state after ``rev``'s site run (``fabric``) on the lab built by ``rev``'s lab playbook
    (fabric gce: and the stand-in's route table, as the pseudo-node CLOUD)."""
    tree = checkout(rev, WORK / ("tree-" + label))
    standin = GceStandIn(project=GCE_PROJECT, token=GCE_TOKEN).start() if fabric == "gce" else None
    more = {"podnet_gce_api_endpoint": standin.endpoint} if standin else {}
    lab = Lab(name=NAME, root=LAB_ROOT, inventory_dir=WORK / ("inventory-" + label),
              nodes=["%s-node%d" % (NAME, i) for i in (1, 2, 3)], lab_vars=lab_vars(fabric, **more), repo=tree)
    try:
        lab.playbook("present")
        if FABRICS[fabric][2]:
            with_routers(lab)
        if standin:
            for spec in lab_instances(str(lab.hosts_yml), GCE_ZONE, GCE_NETWORK):
                standin.add_instance(**spec)
            standin.hook = NetnsRouteSync("%s-router" % NAME)
        log("%s (%s): lab built, running site (fabric %s)" % (label, rev, fabric))
        nodestate.playbook(lab, "site")
        states = {}
        for node in lab.nodes:
            snap = nodestate.node_state(lab, node)
            snap["files"] = without_code(snap["files"])
            snap.update(uplink_snapshots(Path(lab.node_root(node), "upper"), snap["files"]))
            snap["files"] = without_checksum_of_uplink(snap["files"])
            states[node] = snap
        if standin:
            if standin.hook_errors:
                raise RuntimeError("the stand-in's hook failed: %s" % "; ".join(standin.hook_errors))
            states[CLOUD] = {"routes": cloud_routes(standin.route_table())}
        return states
    finally:
        if standin:
            standin.stop()
        lab.destroy()
        if tree != REPO:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def without_code(files: str) -> str:
    """nodestate's file lines ("PATH MODE SHA") without the copies of the collection's code."""
    return "".join(line + "\n" for line in files.splitlines() if not line.startswith(CODE_FILES))


def uplink_snapshots(upper: Path, files: str) -> Dict[str, str]:
    """{"uplink-<bridge>.json": its content with placeholders} of each uplink snapshot among nodestate's file
    lines (``upper``: the node's upper layer)."""
    out = {}
    for line in files.splitlines():
        m = UPLINK_SNAPSHOT.match(line)
        if m and not line.split()[1] == "dir":
            out[m.group(1)] = without_random_addresses((upper / line.split()[0]).read_text())
    return out


def without_random_addresses(text: str) -> str:
    """``text`` with each MAC address and each link-local IPv6 address replaced by a placeholder numbered in the
    order of first appearance ("<mac 1>", "<fe80 1>"): equal values stay equal, the values themselves go."""
    for pattern, label in ((MAC, "mac"), (LINK_LOCAL, "fe80")):
        seen: Dict[str, str] = {}
        text = pattern.sub(lambda m, seen=seen, label=label: seen.setdefault(
            m.group(0).lower(), "<%s %d>" % (label, len(seen) + 1)), text)
    return text


def without_checksum_of_uplink(files: str) -> str:
    """nodestate's file lines with the checksum of each uplink snapshot dropped (its content is an aspect)."""
    return "".join((" ".join(line.split()[:2]) if UPLINK_SNAPSHOT.match(line) else line) + "\n"
                   for line in files.splitlines())


def cloud_routes(table: Dict[str, Dict[str, Any]]) -> str:
    """The stand-in's route table as sorted lines, without what only the stand-in's counter and clock make."""
    lines = []
    for name, route in sorted(table.items()):
        hops = ("nextHopInstance", "nextHopIp", "nextHopGateway", "nextHopIlb", "nextHopVpnTunnel")
        hop = next(("%s %s" % (key, route[key]) for key in hops if route.get(key)), "no next hop")
        lines.append("%s %s via %s priority %s network %s description %r tags %s" % (
            name, route.get("destRange"), hop, route.get("priority"), route.get("network"),
            route.get("description", ""), ",".join(sorted(route.get("tags") or [])) or "-"))
    return "".join(line + "\n" for line in lines)


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
            except (pytest.fail.Exception, subprocess.TimeoutExpired, RuntimeError) as exc:
                # labtools.run: a playbook failed; RuntimeError: the gce stand-in's hook failed
                print(str(exc)[-6000:], file=sys.stderr)
                print("FAILED: fabric %s: a playbook failed" % fabric)
                status = max(status, 3)
                continue
            saved[fabric] = {"old": old, "new": new}
            nodes = [n for n in new if n != CLOUD]
            keys = sorted(set().union(*(new[n] for n in nodes)))
            differences = compare(old, new)
            cloud = " and the stand-in's route table (%d routes)" % len(new[CLOUD]["routes"].splitlines()) \
                if CLOUD in new else ""
            print("fabric %s: compared %d nodes, %d aspects (%s)%s"
                  % (fabric, len(nodes), len(keys), ", ".join(keys), cloud))
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
