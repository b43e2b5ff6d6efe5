# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""What a person reads of a node's change: a one-line summary and a ``--diff`` of what changes on the node.

Pure functions, controller side: the action ``podnet.cluster.node_state`` passes the module's result through them.
The module reports every part (bridge, routes, chains, files, the record); a person wants to see what changes on
the node, named by host, without the restore program's source and without the record's copy of every change.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

# Parts never summarised: the record repeats every other part.
RECORD = "record "


def _plural(count: int, word: str) -> str:
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def _is_lib(name: str, lib_dir: str) -> bool:
    lib = lib_dir.rstrip("/") + "/"
    return any(name.startswith(kind + lib) for kind in ("file ", "link ", "directory "))


def _file_verb(change: Mapping[str, Any]) -> str:
    if change.get("created"):
        return "created"
    if change.get("deleted"):
        return "removed"
    return "updated"


def _lib_line(verbs: Sequence[str]) -> str:
    counts: Dict[str, int] = {}
    for verb in verbs:
        counts[verb] = counts.get(verb, 0) + 1
    parts = ["%s %s" % (_plural(n, "file") if i == 0 else str(n), verb)
             for i, (verb, n) in enumerate(sorted(counts.items(), key=lambda kv: -kv[1]))]
    return "restore program: %s" % ", ".join(parts)


def file_verbs(diffs: Any) -> Dict[str, str]:
    """{part name: created | removed | updated} of the parts whose diff shows a whole file appear or go."""
    verbs: Dict[str, str] = {}
    for entry in diffs if isinstance(diffs, list) else []:
        if isinstance(entry, Mapping):
            name = str(entry.get("before_header") or entry.get("after_header") or "").split(": ", 1)[0]
            before, after = entry.get("before"), entry.get("after")
            verbs[name] = "created" if not before and after else "removed" if before and not after else "updated"
    return verbs


def summarize(changes: Mapping[str, Any], lib_dir: str = "/var/lib/podnet", docker_restart: bool = False,
              removing: bool = False, verbs: Mapping[str, str] = None) -> str:
    """One line: what changes on the node, e.g. "bridge address changed, 6 routes replaced, Docker restart pending".

    ``verbs`` (file_verbs of the diff, when there is one) says which files are created or removed."""
    verbs = verbs or {}
    out: List[str] = []
    lib_verbs: List[str] = []
    for name, change in changes.items():
        change = change if isinstance(change, Mapping) else {}
        if name.startswith(RECORD):
            continue
        if _is_lib(name, lib_dir):
            lib_verbs.append(verbs.get(name) or _file_verb(change))
            continue
        if name.startswith("bridge "):
            bridge = name.split(" ", 1)[1]
            if change.get("created"):
                out.append("bridge %s created" % bridge)
            elif change.get("deleted"):
                out.append("bridge %s removed" % bridge)
            elif change.get("added") or change.get("removed"):
                out.append("bridge address%s changed" % ("es" if len(change.get("added") or []) +
                                                         len(change.get("removed") or []) > 1 else ""))
            else:
                out.append("bridge %s changed" % bridge)
        elif name.startswith("routes"):
            for key, verb in (("added", "added"), ("replaced", "replaced"), ("removed", "removed")):
                if change.get(key):
                    out.append("%s %s" % (_plural(len(change[key]), "route"), verb))
            if not any(change.get(k) for k in ("added", "replaced", "removed")):
                out.append("routes changed")
        elif name.startswith("sysctl"):
            out.append("forwarding settings %s" % ("put back" if removing else "set"))
        elif name.startswith("iptables "):
            out.append("%s chains %s" % (name.split(" ", 1)[1], "removed" if removing else "changed"))
        elif name.startswith("docker "):
            out.append("daemon.json keys %s" % ("put back" if removing else "set"))
        elif name.startswith(("file ", "link ")):
            out.append("%s %s" % (name.split(" ", 1)[1], verbs.get(name) or _file_verb(change)))
        else:
            out.append("%s changed" % name)
    if lib_verbs:
        out.append(_lib_line(lib_verbs))
    if docker_restart:
        out.append("Docker restart pending")
    return ", ".join(out) if out else "no change"


def readable_diff(host: str, diffs: Any, changes: Mapping[str, Any], lib_dir: str = "/var/lib/podnet",
                  verbose: bool = False, summary: str = "") -> List[Dict[str, Any]]:
    """The module's diff, for a person: every header names ``host``, the restore program's files are one line, the
    record (which repeats every change) shows only when ``verbose``, and the summary line ends it."""
    out: List[Dict[str, Any]] = []
    lib_verbs: List[str] = []
    verbs = file_verbs(diffs)
    for entry in diffs if isinstance(diffs, list) else [diffs] if isinstance(diffs, Mapping) else []:
        if not isinstance(entry, Mapping):
            continue
        header = str(entry.get("before_header") or entry.get("after_header") or "")
        name = header.split(": ", 1)[0]
        if _is_lib(name, lib_dir):
            lib_verbs.append(verbs.get(name) or _file_verb(changes.get(name) or {}))
            continue
        if name.startswith(RECORD) and not verbose:
            continue
        item = dict(entry)
        for key in ("before_header", "after_header"):
            if key in item:
                item[key] = "%s: %s" % (host, item[key])
        out.append(item)
    if lib_verbs:
        out.append({"prepared": "%s: %s (%s)\n" % (host, _lib_line(lib_verbs), lib_dir.rstrip("/"))})
    if summary:
        out.append({"prepared": "%s: %s\n" % (host, summary)})
    return out
