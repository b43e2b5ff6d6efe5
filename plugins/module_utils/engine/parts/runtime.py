# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: the container runtimes' files. Docker's daemon.json gets podnet.cluster's keys (each
key's value from before podnet.cluster is recorded, and put back when the document drops the key or Docker);
the CNI conflist is a whole file (engine.files plans it). Not part of the boot restore (files survive a reboot).
Standard library only (Python 3.8+)."""

from __future__ import annotations

import json

from ansible_collections.podnet.cluster.plugins.module_utils.engine.files import apply_file, plan_file
from ansible_collections.podnet.cluster.plugins.module_utils.engine.jsonfile import ABSENT, apply_json, plan_json, read_object
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError

KERNEL = False          # files only: nothing of it when the plan is limited to the kernel
FILE_EXISTED = "__file_existed__"


def _read_json_quiet(path):
    try:
        return read_object(path)
    except EngineError:
        return None, None


def cni_text(conflist, mtu):
    data = json.loads(json.dumps(conflist))
    if mtu:
        for plugin in data.get("plugins", []):
            if plugin.get("type") == "bridge":
                plugin["mtu"] = int(mtu)
    return json.dumps(data, indent=2) + "\n"


def release(ctx):
    """Docker keys an earlier run set and this one does not: put back as they were (the file removed when
    podnet.cluster made it and nothing else is in it)."""
    docker = ctx.doc.get("docker") if ctx.present else None
    old_docker = ctx.old.get("docker")
    files_to_restore = {}
    if old_docker and (not docker or old_docker["file"] != docker["file"]):
        # every key podnet.cluster set there (mtu included), as recorded before its first change
        files_to_restore[old_docker["file"]] = sorted(set(old_docker["set"]) | set(
            k for k in ctx.pristine["docker"].get(old_docker["file"], {}) if k != FILE_EXISTED))
    elif old_docker and docker:
        gone = [k for k in old_docker["set"] if k not in docker["set"]]
        if gone:
            files_to_restore[old_docker["file"]] = gone
    for path, keys in files_to_restore.items():
        before = ctx.pristine["docker"].get(path, {})
        restore = {k: before.get(k, ABSENT) for k in keys if k != FILE_EXISTED}
        change = plan_json(path, restore=restore)
        if before.get(FILE_EXISTED) is False and not change["content"]:
            change = plan_file(path, None)      # podnet.cluster made the file and nothing else is in it
        ctx.plan.add("docker %s (restored)" % path, change, apply_json if "_write" in change else apply_file)
        ctx.plan.docker_changed = ctx.plan.docker_changed or change["changed"]


def plan(ctx):
    """Docker's keys (its MTU the bridge's when asked) and the CNI conflist (its bridge plugin's MTU likewise)."""
    if not ctx.present:
        return
    docker = ctx.doc.get("docker")
    if docker:
        keys = dict(docker["set"])
        if docker.get("mtu_from_bridge") and ctx.mtu:
            keys["mtu"] = int(ctx.mtu)
        current, text = _read_json_quiet(docker["file"])
        recorded = ctx.pristine["docker"].setdefault(docker["file"], {})
        recorded.setdefault(FILE_EXISTED, text is not None)
        for key in keys:
            if key not in recorded:
                recorded[key] = current.get(key, ABSENT) if current is not None else ABSENT
        change = plan_json(docker["file"], keys, refuse=docker.get("refuse") or {}, create_dirs=True)
        ctx.plan.add("docker %s" % docker["file"], change, apply_json)
        ctx.plan.docker_changed = ctx.plan.docker_changed or change["changed"]
    cni = ctx.doc.get("cni")
    if cni:
        ctx.files[cni["file"]] = (cni_text(cni["conflist"], ctx.mtu if cni.get("mtu_from_bridge") else None), 0o644)
