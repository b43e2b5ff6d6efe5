# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: the bridge (its link, pod gateways, MTU); an old bridge (renamed, teardown) loses
what podnet.cluster gave it. The kernel work is engine.bridge's. Standard library only (Python 3.8+)."""

from __future__ import annotations

import os

from ansible_collections.podnet.cluster.plugins.module_utils.engine.bridge import (
    apply_bridge,
    plan_bridge,
    read_bridge,
    resolve_mtu,
)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay_node import bridge_mtu
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import read_text


def bridge_supported():
    """True when the kernel has (or can load) the bridge driver."""
    if os.path.isdir("/sys/module/bridge"):
        return True
    release = os.uname().release
    for name in ("/lib/modules/%s/modules.builtin" % release, "/lib/modules/%s/modules.dep" % release):
        text = read_text(name) if os.path.isfile(name) else None
        if text and "/bridge.ko" in text:
            return True
    return False


def _recorded_addresses(ctx):
    return list((ctx.old.get("bridge") or {}).get("addresses") or [])


def release(ctx):
    """The record's bridge when it is renamed or torn down; one that was there before podnet.cluster keeps its
    link, and only podnet.cluster's addresses go."""
    runner = ctx.runner
    old_bridge = (ctx.old.get("bridge") or {}).get("name")
    if old_bridge and (old_bridge != ctx.doc["bridge"]["name"] or not ctx.present):
        if read_bridge(runner, old_bridge)[0] is not None:
            change = plan_bridge(runner, old_bridge, (), ctx.owned_cidrs, state="absent",
                                 owned_addresses=_recorded_addresses(ctx),
                                 keep_link=ctx.pristine["bridge_existed"].get(old_bridge, False))
            ctx.plan.warnings.extend(change.pop("warnings"))
            ctx.plan.add("old bridge %s" % old_bridge, change, lambda c: apply_bridge(runner, c))


def plan(ctx):
    """The document's bridge; sets ``ctx.mtu`` (the runtimes' MTU and the record's)."""
    if not ctx.present:
        return
    runner, doc = ctx.runner, ctx.doc
    bridge = doc["bridge"]
    exists = read_bridge(runner, bridge["name"])[0] is not None
    if not exists and not bridge_supported():
        raise EngineError("node %s: the kernel has no bridge support (module bridge is neither loaded nor "
                          "installed for %s): podnet.cluster needs the Linux bridge for %s"
                          % (doc["node"], os.uname().release, bridge["name"]))
    if bridge["name"] not in ctx.pristine["bridge_existed"]:
        ctx.pristine["bridge_existed"][bridge["name"]] = exists
    bmtu = bridge.get("mtu") or (bridge_mtu(runner, doc["overlay"]) if doc.get("overlay") else None)
    same = (ctx.old.get("bridge") or {}).get("name") == bridge["name"]
    change = plan_bridge(runner, bridge["name"], bridge.get("addresses") or [], ctx.owned_cidrs,
                         bmtu, bridge.get("mtu_from_address"), "present",
                         owned_addresses=_recorded_addresses(ctx) if same else ())
    ctx.plan.warnings.extend(change.pop("warnings"))
    ctx.plan.add("bridge %s" % bridge["name"], change, lambda c: apply_bridge(runner, c))
    ctx.mtu = change["mtu"]


def _restore(rctx):
    runner, doc, record = rctx.runner, rctx.doc, rctx.record
    bridge = doc["bridge"]
    mtu, mtu_from = bridge.get("mtu"), bridge.get("mtu_from_address")
    warnings = []
    if mtu is None and doc.get("overlay"):
        try:
            mtu, mtu_from = bridge_mtu(runner, doc["overlay"]), None
        except EngineError as exc:
            mtu, mtu_from = record.get("bridge_mtu"), None
            warnings.append("bridge %s made with the MTU of the last run (%s): %s" % (bridge["name"], mtu, exc.msg))
    if mtu is None and mtu_from:
        try:
            resolve_mtu(runner, None, mtu_from, bridge["name"])
        except EngineError as exc:
            # the node IP is not on a link yet: the bridge and its gateways come first, with the MTU of the last run
            mtu, mtu_from = record.get("bridge_mtu"), None
            warnings.append("bridge %s made with the MTU of the last run (%s): %s" % (bridge["name"], mtu, exc.msg))
    owned = list(doc.get("owned_cidrs") or [])
    change = plan_bridge(runner, bridge["name"], bridge.get("addresses") or [], owned, mtu, mtu_from, "present",
                         owned_addresses=list(bridge.get("addresses") or []))
    warnings.extend(change.pop("warnings"))
    if change["changed"] and not rctx.check:
        apply_bridge(runner, change)
    return change, warnings


def restore(rctx):
    """The bridge and its gateways first: Docker needs the bridge."""
    return [("bridge %s" % rctx.doc["bridge"]["name"], lambda: _restore(rctx))]
