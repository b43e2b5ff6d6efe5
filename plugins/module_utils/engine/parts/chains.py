# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: the iptables chains of the document (and the jumps to them); chains of the record the
document no longer has go. The kernel work is engine.chains'. Standard library only (Python 3.8+)."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.module_utils.engine.chains import apply_chains, plan_chains, test_chains


def chain_sets(doc):
    """{(ip_version, table): [chain names]} of a document."""
    out = {}
    for item in doc.get("iptables") or []:
        out.setdefault((int(item["ip_version"]), item["table"]), []).extend(c["name"] for c in item["chains"])
    return out


def release(ctx):
    runner = ctx.runner
    wanted = chain_sets(ctx.doc) if ctx.present else {}
    for (ipv, table), names in sorted(chain_sets(ctx.old).items()):
        gone = [n for n in names if n not in wanted.get((ipv, table), [])]
        if gone:
            change = plan_chains(runner, ipv, table, [{"name": n} for n in gone], state="absent")
            ctx.plan.add("iptables IPv%d %s (removed)" % (ipv, table), change, lambda c: apply_chains(runner, c))


def plan(ctx):
    if not ctx.present:
        return
    runner = ctx.runner
    # The FORWARD policy is the host's: never read into the record, never changed (PODNET-FORWARD accepts pod
    # traffic under DROP); a record of an earlier version that kept it drops it.
    ctx.pristine.pop("forward_policy", None)
    for item in ctx.doc.get("iptables") or []:
        ipv = int(item["ip_version"])
        change = plan_chains(runner, ipv, item["table"], item["chains"])
        ctx.plan.add("iptables IPv%d %s" % (ipv, item["table"]), change, lambda c: apply_chains(runner, c))


def _restore(rctx, item):
    change = plan_chains(rctx.runner, int(item["ip_version"]), item["table"], item["chains"])
    if rctx.check and change["changed"]:
        test_chains(rctx.runner, change)
    elif change["changed"]:
        apply_chains(rctx.runner, change)
    return change, []


def restore(rctx):
    return [("iptables IPv%d %s" % (int(item["ip_version"]), item["table"]), lambda item=item: _restore(rctx, item))
            for item in rctx.doc.get("iptables") or []]
