# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: the uplink of fabric l2_bridge. A converge does not move it (podnet.cluster.uplink_bridge
does, detached from the connection and confirmed over a new one: ``uplink_tasks`` gives its arguments); the boot
restore moves it into the bridge again. The uplink engine (module_utils/uplink) is imported only where a node has an
uplink. Standard library only (Python 3.8+)."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError

UPLINK_MODULE = "ansible_collections.podnet.cluster.plugins.module_utils.uplink"
# the files of the uplink engine: its entry point and the three it is made of
UPLINK_MODULES = tuple(UPLINK_MODULE + suffix for suffix in ("", "_state", "_plan", "_io"))


def _engine():
    from ansible_collections.podnet.cluster.plugins.module_utils import uplink
    return uplink


def lib_modules(doc):
    """The uplink engine joins the restore program of a node that has an uplink."""
    if doc.get("uplink"):
        _engine()
        return list(UPLINK_MODULES)
    return []


def snapshot_uplink(path):
    """The uplink's snapshot at ``path``, or None (no path, no file)."""
    if not path:
        return None
    uplink_engine = _engine()
    try:
        saved = uplink_engine.load_snapshot(path)
    except (uplink_engine.UplinkError, OSError, ValueError) as exc:
        raise EngineError("%s cannot be read (%s): it holds the uplink's addresses and routes from before its move "
                          "into the bridge" % (path, exc))
    return saved


def uplink_tasks(doc, record, state="present"):
    """(release, move): the arguments of podnet.cluster.uplink_bridge to run before and after the node's apply.

    ``release`` (state absent) puts back an uplink that an earlier run moved into a bridge, when the document no
    longer wants it there (another fabric, another bridge, teardown); ``move`` (state present) moves the uplink
    of the document's fabric l2_bridge. None when there is nothing of the kind. The moves themselves are not the
    node module's: they run detached from the connection and are confirmed over a new one.
    """
    want = doc.get("uplink") if state == "present" else None
    old = ((record or {}).get("document") or {}).get("uplink")
    if old is None and state != "present":
        old = doc.get("uplink")
    release = None
    if old and (want is None or want.get("bridge") != old.get("bridge")):
        path = old.get("snapshot_path")
        saved = snapshot_uplink(path)
        if saved is not None:
            release = dict(bridge=old["bridge"], uplink=saved.get("uplink"), state="absent", snapshot_path=path,
                           check_address=list(old.get("check_address") or []),
                           check_method=old.get("check_method", "ping"),
                           check_timeout=int(old.get("check_timeout", 5)),
                           rollback_timeout=int(old.get("rollback_timeout", 30)))
    move = dict(want, state="present") if want else None
    return release, move


def plan(ctx):
    """Nothing: the converge's moves are podnet.cluster.uplink_bridge's (see ``uplink_tasks``)."""


def restore_uplink(runner, doc, check=False, wait=0):
    """The boot-time part of fabric l2_bridge: move the uplink into the bridge again (nothing when it is there).

    ``wait`` (seconds, the boot unit's): the check after the move is retried with backoff that long before the
    move is rolled back; an uplink address that is on no link yet is a retryable error (the caller retries).
    Returns (changed, summary); EngineError when the move was rolled back (the node keeps its uplink as it was).
    """
    spec = doc.get("uplink")
    if not spec:
        return False, {}
    uplink_engine = _engine()
    ip = runner.which("ip")
    bridge = spec["bridge"]
    path = spec.get("snapshot_path")
    saved = snapshot_uplink(path)
    try:
        if spec.get("uplink"):
            name = spec["uplink"]
        else:
            name = uplink_engine.find_uplink(runner, spec["uplink_address"], bridge, saved, ip)
    except uplink_engine.UplinkError as exc:
        raise EngineError("the uplink of %s: %s" % (bridge, exc), retry=True)
    try:
        before = uplink_engine.read_snapshot(runner, bridge, name, ip)
        if not spec.get("uplink") and not uplink_engine.global_addresses(before, name) \
                and (before["links"].get(name) or {}).get("master") != bridge:
            raise EngineError("the uplink of %s: %s holds no global address yet" % (bridge, name), retry=True)
        lines = uplink_engine.plan_move(before)
        if not lines or check:
            return bool(lines), ({"uplink %s" % name: {"commands": lines}} if lines else {})
        if saved is None and path:
            uplink_engine.save_snapshot(path, before)
        timeout = max(float(spec.get("check_timeout", 5)), float(wait))
        out = uplink_engine.move(runner, bridge, name, spec.get("check_address") or None,
                                 spec.get("check_method", "ping"), timeout, None, before, ip, backoff=wait > 0)
    except uplink_engine.UplinkError as exc:
        raise EngineError("the uplink of %s: %s" % (bridge, exc))
    if out["error"]:
        raise EngineError("moving %s into %s was rolled back (%s)%s" % (
            name, bridge, out["error"], "" if out.get("rollback_complete") else "; the rollback is incomplete"))
    return True, {"uplink %s" % name: {"commands": out["commands"]}}


def restore(rctx):
    """Last: the uplink moves into a bridge that the parts before it made."""
    doc = rctx.doc
    if not doc.get("uplink"):
        return []

    def move():
        moved, summary = restore_uplink(rctx.runner, doc, rctx.check, rctx.wait)
        name, change = next(iter(summary.items())) if summary else ("uplink", {})
        return dict(change, changed=moved, _name=name), []
    return [("uplink", move)]
