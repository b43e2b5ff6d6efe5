# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: the routes of the collection's protocol (both families, one pass); routes of the
record's protocol go when it changes or at teardown. The overlay's devices are the overlay part's. The kernel
work is engine.routes'. Standard library only (Python 3.8+)."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.module_utils.engine.routes import apply_routes, plan_routes
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError


def _old_protocol(ctx):
    return (ctx.old.get("routes") or {}).get("protocol")


def release(ctx):
    """The routes of the record's protocol, when the document's differs or at teardown."""
    runner, routes = ctx.runner, ctx.doc["routes"]
    old_proto = _old_protocol(ctx)
    if old_proto is not None and (old_proto != routes["protocol"] or not ctx.present):
        change = plan_routes(runner, (), ctx.doc["node"], old_proto, (ctx.old.get("routes") or {}).get("table", "main"),
                             "absent", keep=ctx.pristine.get("foreign_routes") or (),
                             skip_devs=ctx.overlay_devices())
        ctx.plan.add("routes proto %s (removed)" % old_proto, change, lambda c: apply_routes(runner, c))


def plan(ctx):
    """The document's routes. On the first converge, routes of the protocol that are not among them are
    somebody else's: left alone, recorded in ``pristine.foreign_routes`` and named in a warning."""
    runner, doc, routes = ctx.runner, ctx.doc, ctx.doc["routes"]
    keep = list(ctx.pristine.get("foreign_routes") or [])
    skip = ctx.overlay_devices()
    if ctx.present:
        change = plan_routes(runner, routes.get("routes") or [], doc["node"], routes["protocol"],
                             routes.get("table", "main"), "present", diff=ctx.diff, keep=keep, skip_devs=skip)
        if ctx.record is None and change["removed"] and not ctx.kernel_only:
            found = [r["route"] for r in change["removed"]]
            ctx.plan.warnings.append(
                "node %s: %d route(s) with protocol %s (podnet_route_protocol) exist before podnet.cluster's first "
                "converge here and are not among its routes: %s. They are left alone and recorded as not "
                "podnet.cluster's; if another tool uses protocol %s, give podnet_route_protocol a free number "
                "(and remove the routes of the old number by hand if they were an earlier podnet.cluster's)"
                % (doc["node"], len(found), routes["protocol"], "; ".join(found[:10]), routes["protocol"]))
            keep = sorted(set(keep) | {r["ident"] for r in change["removed"]})
            ctx.pristine["foreign_routes"] = keep
            change = plan_routes(runner, routes.get("routes") or [], doc["node"], routes["protocol"],
                                 routes.get("table", "main"), "present", diff=ctx.diff, keep=keep, skip_devs=skip)
        ctx.plan.add("routes", change, lambda c: apply_routes(runner, c))
    elif _old_protocol(ctx) is None:
        change = plan_routes(runner, (), doc["node"], routes["protocol"], routes.get("table", "main"), "absent",
                             keep=keep, skip_devs=skip)
        ctx.plan.add("routes", change, lambda c: apply_routes(runner, c))


def _restore(rctx):
    doc, routes = rctx.doc, rctx.doc["routes"]
    change = plan_routes(rctx.runner, routes.get("routes") or [], doc["node"], routes["protocol"],
                         routes.get("table", "main"), "present", diff=False, offlink="skip",
                         keep=(rctx.record.get("pristine") or {}).get("foreign_routes") or (),
                         skip_devs=rctx.overlay_devices())
    if change["changed"] and not rctx.check:
        apply_routes(rctx.runner, change)
    if change.get("skipped"):
        raise EngineError("%d route(s) left out, their gateways are not on-link yet: %s"
                          % (len(change["skipped"]), "; ".join(change["skipped"][:10])), retry=True, change=change)
    return change, []


def restore(rctx):
    return [("routes", lambda: _restore(rctx))]
