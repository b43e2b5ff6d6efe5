# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: sysctls (forwarding, accept_ra on links that learn from router advertisements) live
and in their persisted file; keys an earlier run set and this one does not are put back as they were before
podnet.cluster. The kernel work is engine.sysctl's. Standard library only (Python 3.8+)."""

from __future__ import annotations

import re

from ansible_collections.podnet.cluster.plugins.module_utils.engine.files import apply_file, plan_file
from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts.uplink import snapshot_uplink
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.engine.sysctl import (
    apply_sysctl,
    canon_key,
    find_conflicts,
    plan_sysctl,
    read_live,
    validate_settings,
    write_live,
    write_order,
)
from ansible_collections.podnet.cluster.plugins.module_utils.ifname import valid_ifname
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import route_protocol, run_ip_json

ACCEPT_RA = re.compile(r"^net/ipv6/conf/([^/]+)/accept_ra$")


def ra_links(runner):
    """Links that learn from router advertisements now: an RA-learned route (default or other) goes out of them,
    or they hold a global address with a finite lifetime (SLAAC); a link whose accept_ra is 0 is left alone."""
    found = []
    for route in run_ip_json(runner, ["-6", "route", "show", "table", "all"], tolerate=True):
        if route_protocol(route) not in (9, "ra"):
            continue
        for dev in [route.get("dev")] + [nh.get("dev") for nh in route.get("nexthops") or []]:
            if dev and dev not in found:
                found.append(dev)
    for entry in run_ip_json(runner, ["-6", "addr", "show"], numeric=False, tolerate=True):
        for info in entry.get("addr_info") or []:
            if info.get("scope") == "global" and info.get("dynamic") and entry.get("ifname") not in found:
                found.append(entry.get("ifname"))
    out = []
    for dev in found:
        if dev and valid_ifname(dev) and read_live("net/ipv6/conf/%s/accept_ra" % dev, missing_ok=True) not in (
                None, "0"):
            out.append(dev)
    return out


def ra_settings(runner, settings, uplink=None, recorded=None):
    """accept_ra=2 on every link that learns from router advertisements, when podnet.cluster turns IPv6
    forwarding on: a forwarding host ignores advertisements on a link with accept_ra=1, and the kernel purges
    that link's RA-learned default routes the moment forwarding goes on.

    ``recorded`` (the settings of the node's record): a link that got accept_ra=2 keeps it until teardown, whatever
    its routes do meanwhile (a router outage must not make the node deaf to the router's return), as long as the
    link exists. With an uplink that moves into the bridge (``uplink``: the document's, fabric l2_bridge) the route
    is on the uplink before the move and on the bridge after it: both get the setting, so every run wants the same.
    """
    out = {}
    for key, value in (recorded or {}).items():
        match = ACCEPT_RA.match(canon_key(key))
        # the bridge of fabric l2_bridge may be missing now: this change creates it again
        if match and str(value) == "2" and (read_live(key, missing_ok=True) is not None
                                            or match.group(1) == (uplink or {}).get("bridge")):
            out["net/ipv6/conf/%s/accept_ra" % match.group(1)] = "2"
    if str(settings.get("net.ipv6.conf.all.forwarding")) != "1":
        return out
    devs = ra_links(runner)
    for dev in devs:
        out["net/ipv6/conf/%s/accept_ra" % dev] = "2"
    if devs and uplink:
        names = {uplink["bridge"], uplink.get("uplink")}
        names.add((snapshot_uplink(uplink.get("snapshot_path")) or {}).get("uplink"))
        for dev in sorted(n for n in names if n):
            if valid_ifname(dev):
                out["net/ipv6/conf/%s/accept_ra" % dev] = "2"
    # by name: the record (read back as ``recorded``) keeps its keys sorted, and the order found here depends on
    # where the routes are now; the file's lines must come out the same on every run
    return dict(sorted(out.items()))


def release(ctx):
    """The record's persisted file, when the document names another."""
    old_file = (ctx.old.get("sysctl") or {}).get("file")
    if old_file and old_file != ctx.doc["sysctl"]["file"]:
        ctx.plan.add("sysctl file", plan_file(old_file, None), apply_file)


def plan(ctx):
    """The document's settings (accept_ra added where forwarding needs it; the record keeps them all, so teardown
    puts each one back), and the record's settings this document drops, put back as they were."""
    doc, pristine = ctx.doc, ctx.pristine
    settings = dict(doc["sysctl"].get("settings") or {}) if ctx.present else {}
    if ctx.present:
        # accept_ra first: the write order puts these keys before forwarding (see engine.sysctl.write_order)
        settings = dict(ra_settings(ctx.runner, settings, doc.get("uplink"),
                                    (ctx.old.get("sysctl") or {}).get("settings")), **settings)
        ctx.doc = doc = dict(doc, sysctl=dict(doc["sysctl"], settings=dict(settings)))
    # keys of the bridge, which this change may create before it writes them
    not_yet = {k for k in settings if k.startswith("net/ipv6/conf/%s/" % doc["bridge"]["name"])}
    for key in settings:
        if key not in pristine["sysctl"]:
            pristine["sysctl"][key] = read_live(key, missing_ok=key in not_yet)
    change = plan_sysctl(settings, doc["sysctl"]["file"], apply=True,
                         conflicts=doc["sysctl"].get("conflicts", "fail") if ctx.present else "ignore",
                         warn=ctx.plan.warnings.append, not_yet=not_yet)
    dropped = [k for k in (ctx.old.get("sysctl") or {}).get("settings") or {} if k not in settings]
    for key in write_order(dropped, teardown=True):
        before = pristine["sysctl"].get(key)
        # a link that is gone took its keys with it
        if before is not None and read_live(key, missing_ok=True) not in (before, None):
            change["to_write"].append((key, "/proc/sys/" + canon_key(key), before))
            change["changed_keys"].append(key)
            change["changed"] = True
    if ctx.kernel_only:
        change["file_changed"] = False
        change["changed"] = bool(change["to_write"])
    ctx.plan.add("sysctl", change, apply_sysctl)


def _forwarding_first(key):
    """Order of the restore's sysctl writes: per-link settings (accept_ra) before forwarding goes on."""
    ck = canon_key(key)
    return (ck.endswith("/forwarding") or ck == "net/ipv4/ip_forward", ck)


def _restore(rctx):
    """Every recorded live value, key by key (one that cannot be written does not stop the others)."""
    sysctl = rctx.doc.get("sysctl") or {}
    settings = validate_settings(sysctl.get("settings") or {})
    warnings, problems, to_write = [], [], []
    for key in sorted(settings, key=_forwarding_first):
        try:
            current = read_live(key)
        except EngineError as exc:
            problems.append(exc.msg)
            continue
        if current != settings[key]:
            to_write.append(key)
            if not rctx.check:
                try:
                    write_live(key, "/proc/sys/" + canon_key(key), settings[key])
                except EngineError as exc:
                    problems.append(exc.msg)
                    to_write.remove(key)
    found = find_conflicts(sysctl.get("file") or "", settings) if sysctl.get("file") else []
    if found:
        text = "; ".join(f["msg"] for f in found)
        if sysctl.get("conflicts", "fail") == "fail":
            problems.append("set anyway, but %s: the next sysctl --system undoes it. Remove those lines or make "
                            "them agree" % text)
        else:
            warnings.append(text)
    change = dict(changed=bool(to_write), changed_keys=to_write)
    if problems:
        raise EngineError("; ".join(problems), retry=any("does not exist" in p for p in problems), change=change)
    return change, warnings


def restore(rctx):
    return [("sysctl", lambda: _restore(rctx))]
