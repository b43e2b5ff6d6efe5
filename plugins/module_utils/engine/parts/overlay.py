# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: the overlay of fabric vxlan (its VXLAN devices, then per peer its neighbour, FDB
entry and route); devices of the record the document no longer wants go first. The kernel work is
engine.overlay's. Standard library only (Python 3.8+)."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay import apply_overlay, plan_overlay
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError


def devices(*docs):
    """Names of the overlay devices of the documents given (a document and its record's, say)."""
    names = []
    for d in docs:
        names.extend(dev["name"] for dev in ((d or {}).get("overlay") or {}).get("devices") or [])
    return sorted(set(names))


def release(ctx):
    """Devices an earlier run made and this one does not want (fabric vxlan left, a family dropped)."""
    old = ctx.old
    if not old.get("overlay"):
        return
    runner = ctx.runner
    wanted = devices(ctx.doc if ctx.present else {})
    change = plan_overlay(runner, None, ctx.doc["node"], (old.get("routes") or {}).get("protocol", 158), "absent",
                          old=dict(old["overlay"], devices=[d for d in old["overlay"].get("devices") or []
                                                            if d["name"] not in wanted]))
    ctx.plan.add("overlay (removed)", change, lambda c: apply_overlay(runner, c))


def plan(ctx):
    doc = ctx.doc
    if not (ctx.present and doc.get("overlay")):
        return
    runner = ctx.runner
    change = plan_overlay(runner, doc["overlay"], doc["node"], doc["routes"]["protocol"], "present", diff=ctx.diff,
                          ours=ctx.overlay_devices())
    ctx.plan.add("overlay", change, lambda c: apply_overlay(runner, c))


def _restore(rctx):
    """The devices (same MAC) and every peer's entries; a node IP not on a link yet is retried."""
    doc = rctx.doc
    try:
        change = plan_overlay(rctx.runner, doc["overlay"], doc["node"], doc["routes"]["protocol"], "present",
                              diff=False)
    except EngineError as exc:
        raise EngineError(exc.msg, retry="no link on this node holds" in exc.msg)
    if change["changed"] and not rctx.check:
        apply_overlay(rctx.runner, change)
    return change, []


def restore(rctx):
    return [("overlay", lambda: _restore(rctx))] if rctx.doc.get("overlay") else []
