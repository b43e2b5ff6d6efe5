# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The node engine: one node's whole desired state (the node document) reconciled in one pass.

The controller computes the document (plugins/plugin_utils/document.py). Here, on the node:

* ``plan_node`` reads the node and the record of the last run and computes every change, part by part
  (engine.parts: the bridge, forwarding, chains, routes, the overlay, the uplink, the runtimes' files, the
  units): first what an earlier run owned and the document no longer wants (a renamed bridge, a dropped
  runtime or family, masquerade turned off, another fabric), then what the document wants;
* ``apply_node`` writes it, part by part, and then the record ``<state_dir>/node.json``;
* the boot unit and the Docker drop-in re-apply the kernel state of the record (engine.restore) with the parts'
  own functions.

The record keeps what podnet.cluster owns and what it found before it first changed a thing
(``pristine``), so teardown and transitions never depend on the current inventory alone.

Standard library only (Python 3.8+), no Ansible import: the node module copies these very files to
``<lib_dir>/lib`` for the boot-time restore.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys

from ansible_collections.podnet.cluster.plugins.module_utils.engine import DOCUMENT_VERSION
from ansible_collections.podnet.cluster.plugins.module_utils.engine.bridge import read_bridge
from ansible_collections.podnet.cluster.plugins.module_utils.engine.chains import test_chains
from ansible_collections.podnet.cluster.plugins.module_utils.engine.files import (
    apply_dirs,
    apply_file,
    plan_dirs,
    plan_file,
    plan_whole_files,
)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts import PARTS
from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts.overlay import devices as overlay_devices
from ansible_collections.podnet.cluster.plugins.module_utils.engine.plan import Plan
from ansible_collections.podnet.cluster.plugins.module_utils.engine.record import check_document, record_path
from ansible_collections.podnet.cluster.plugins.module_utils.engine.restore import main as restore_main
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, reads_once
from ansible_collections.podnet.cluster.plugins.module_utils.engine.units import lib_paths, unit_files, unit_links
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import make_dirs, read_text
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import describe_route, route_dst, route_protocol, run_ip_json


class Context(object):
    """What the parts of one node's plan share (see engine.parts).

    ``doc`` (a part may refine it: the record keeps it), ``old`` (the record's document), ``record``,
    ``pristine`` (what the node held before podnet.cluster's first change; the record keeps it), ``present``,
    ``kernel_only``, ``diff``, ``owned_cidrs`` (the document's and the record's), ``mtu`` (the bridge's, once
    planned), ``files``/``links`` (whole files {path: (content, mode)} and links {path: target} the parts want)
    and ``plan``.
    """

    def __init__(self, runner, doc, record, state, kernel_only, diff, plan):
        self.runner, self.doc, self.record, self.plan = runner, doc, record, plan
        self.present = state == "present"
        self.kernel_only, self.diff = kernel_only, diff
        self.old = (record or {}).get("document") or {}
        self.pristine = dict((record or {}).get("pristine") or {})
        for key in ("sysctl", "docker", "bridge_existed"):
            self.pristine.setdefault(key, {})
        wanted = list(doc.get("owned_cidrs") or [])
        self.owned_cidrs = wanted + [c for c in self.old.get("owned_cidrs") or [] if c not in wanted]
        self.mtu = None
        self.files, self.links = {}, {}

    def overlay_devices(self):
        """The overlay devices of the document and of the record: the overlay part's, nobody else's."""
        return overlay_devices(self.doc, self.old)


def foreign_in_cluster(runner, doc, old=None):
    """Routes and local addresses podnet.cluster does not own that lie inside a cluster network.

    A pod route (or a pod gateway) would shadow them: a VPN or second-NIC network inside the cluster network
    is cut off. Ours: routes of our protocol (this document's or the record's), routes and addresses on our
    bridge (this document's or the record's). Returns one line per problem.
    """
    old = old or {}
    clusters = []
    for cidr in doc.get("owned_cidrs") or []:
        try:
            clusters.append(ipaddress.ip_network(cidr))
        except ValueError:
            raise EngineError("owned_cidrs: %r is not a network" % (cidr,))
    if not clusters:
        return []
    bridges = {doc["bridge"]["name"], (old.get("bridge") or {}).get("name")} | set(overlay_devices(doc, old))
    protocols = {doc["routes"]["protocol"], (old.get("routes") or {}).get("protocol")}
    problems = []
    for fam in sorted({c.version for c in clusters}):
        nets = [c for c in clusters if c.version == fam]
        for route in run_ip_json(runner, ["-%d" % fam, "route", "show", "table", "main"], tolerate=fam == 6):
            try:
                dst = route_dst(route, fam)
            except ValueError:
                continue
            if route_protocol(route) in protocols or route.get("dev") in bridges:
                continue
            for net in nets:
                if dst.prefixlen >= net.prefixlen and dst.subnet_of(net):
                    problems.append("route '%s' lies inside the cluster network %s" % (describe_route(route, fam), net))
    for entry in run_ip_json(runner, ["addr", "show"], numeric=False):
        if entry.get("ifname") in bridges:
            continue
        for info in entry.get("addr_info") or []:
            try:
                addr = ipaddress.ip_address(info.get("local", ""))
            except ValueError:
                continue
            for net in clusters:
                if addr in net:
                    problems.append("address %s/%s on %s lies inside the cluster network %s"
                                    % (addr, info.get("prefixlen"), entry.get("ifname"), net))
    return problems


def _record_without_file(runner, doc, plan):
    """Teardown without a record: remove what carries podnet.cluster's names and marks (its chains, routes of
    its protocol, its unit, restore and CNI files), restore nothing, and keep the bridge's link: no record says
    podnet.cluster created it (an operator's bridge of that name must survive)."""
    name = doc["bridge"]["name"]
    record = dict(document=doc, files=sorted(list(unit_files(doc)) + lib_paths(doc)
                                             + ([doc["cni"]["file"]] if doc.get("cni") else [])),
                  links=sorted(unit_links(doc)), pristine={"bridge_existed": {name: True}})
    if read_bridge(runner, name)[0] is not None:
        plan.warnings.append("node %s: no record at %s, so the bridge %s is left as it is (podnet.cluster has "
                             "no record of creating it); delete it by hand if it was podnet.cluster's"
                             % (doc["node"], record_path(doc), name))
    return record


def _check_foreign(ctx):
    problems = foreign_in_cluster(ctx.runner, ctx.doc, ctx.old)
    if problems:
        raise EngineError(
            "node %s: %d route(s) or address(es) that podnet.cluster does not own lie inside the cluster "
            "network (podnet_cluster_cidrs); pod routes and gateways would shadow them: %s. Choose a cluster "
            "network that does not overlap them, or remove them." % (ctx.doc["node"], len(problems),
                                                                     "; ".join(problems[:10])),
            foreign=problems)


def _plan_record(ctx):
    """The record (last but the directories), and the directories podnet.cluster created that nothing of it
    needs any more (a dropped runtime's, teardown)."""
    plan, path = ctx.plan, record_path(ctx.doc)
    # recorded: the ones an earlier run created; apply_node adds the ones this run's writers really create
    created = set(ctx.pristine.get("created_dirs") or [])
    if ctx.present:
        ctx.pristine["created_dirs"] = sorted(created)
        plan.record = dict(version=DOCUMENT_VERSION, document=ctx.doc, files=sorted(ctx.files),
                           links=sorted(ctx.links), pristine=ctx.pristine, interpreter=sys.executable,
                           bridge_mtu=ctx.mtu)
        plan.record_change = plan_file(path, json.dumps(plan.record, indent=1, sort_keys=True) + "\n", 0o600)
    else:
        plan.record_change = plan_file(path, None)
    plan.add("record %s" % path, plan.record_change, apply_file)
    removing = [c["path"] for _n, c, _f in plan.parts
                if c["changed"] and c.get("path") and (c.get("content", "") is None or c.get("target", "") is None)]
    keeping = list(ctx.files) + list(ctx.links) if ctx.present else []
    # the __pycache__ folders of the compiled forms removed with their files go too, once empty
    created |= set(os.path.dirname(path) for path in removing
                   if os.path.basename(os.path.dirname(path)) == "__pycache__")
    plan.add("directories", plan_dirs(sorted(created, key=len, reverse=True), removing, keeping), apply_dirs)


def plan_node(runner, doc, record=None, state="present", kernel_only=False, diff=True):
    """Every change that makes the node match ``doc`` (state=present) or removes podnet.cluster (absent).

    ``record`` is the record of the last run (read_record), or None. ``kernel_only`` (the restore) limits
    the work to the kernel's parts (no files, no record). Raises EngineError before any write; a read that
    several parts make runs once (engine.runner.reads_once).
    """
    with reads_once(runner):
        return _plan_node(runner, doc, record, state, kernel_only, diff)


def _plan_node(runner, doc, record, state, kernel_only, diff):
    check_document(doc)
    plan = Plan()
    if record is None and state != "present":
        record = _record_without_file(runner, doc, plan)
    ctx = Context(runner, doc, record, state, kernel_only, diff, plan)
    if ctx.present and not kernel_only:
        _check_foreign(ctx)
    parts = [p for p in PARTS if not (kernel_only and not getattr(p, "KERNEL", True))]
    for part in parts:
        if hasattr(part, "release"):
            part.release(ctx)
    for part in parts:
        part.plan(ctx)
    if kernel_only:
        return plan
    plan_whole_files(plan, ctx.files, ctx.links, ctx.record)
    _plan_record(ctx)
    return plan


def check_node(runner, plan):
    """Checks that need the kernel but write nothing: iptables-restore --test of every chain change."""
    for name, change, _func in plan.parts:
        if name.startswith("iptables") and change["changed"]:
            test_chains(runner, change)


def _record_created(plan, made):
    """The record with the directories created by this run (``made``) added to the recorded ones."""
    pristine = plan.record["pristine"]
    created = sorted(set(pristine.get("created_dirs") or []) | set(made))
    if created == pristine.get("created_dirs"):
        return
    pristine["created_dirs"] = created
    change = plan.record_change
    change["content"] = json.dumps(plan.record, indent=1, sort_keys=True) + "\n"
    change["changed"] = read_text(change["path"]) != change["content"]
    change["diff"]["after"] = change["content"]


def apply_node(plan, runner=None):
    """Apply every changed part in order; the record last. systemd re-reads changed units."""
    done, made = [], []
    for name, change, func in plan.parts:
        if change is plan.record_change and plan.record is not None:
            # the directories this run's writers created (the record's own too) join the recorded ones
            made.extend(make_dirs(os.path.dirname(change["path"])))
            _record_created(plan, made)
        if change["changed"]:
            try:
                func(change)
            except EngineError as exc:
                exc.details.setdefault("applied", done)
                exc.msg = "%s: %s (applied before it: %s)" % (name, exc.msg, ", ".join(done) or "nothing")
                raise
            done.append(name)
            made.extend(change.get("created_dirs") or [])
    units = [n for n in done if n.startswith("file ") and (".service" in n or ".conf" in n and "systemd" in n)]
    if units and runner is not None and os.path.isdir("/run/systemd/system"):
        rc, out, err = runner.run([runner.which("systemctl"), "daemon-reload"])
        if rc != 0:
            raise EngineError("systemctl daemon-reload failed: %s" % (err or out).strip())
    return done


def held(runner, doc, record):
    """What this node holds already: pod CIDRs of its record, and gateways on bridges inside the cluster."""
    recorded = list(((record or {}).get("document") or {}).get("pod_cidrs") or [])
    names = [doc["bridge"]["name"]]
    old = ((record or {}).get("document") or {}).get("bridge", {}).get("name")
    if old and old not in names:
        names.append(old)
    owned = [ipaddress.ip_network(c) for c in doc.get("owned_cidrs") or []]
    gateways = []
    for name in names:
        link, addrs, _dad = read_bridge(runner, name)
        if link is None:
            continue
        for iface in addrs:
            if any(iface.ip in net for net in owned):
                gateways.append(str(iface))
    return dict(recorded=recorded, gateways=gateways)


def main(argv):
    """The restore program's entry point (podnet-restore imports it from here): engine.restore.main."""
    return restore_main(argv)
