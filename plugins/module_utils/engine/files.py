# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""File planning of the node engine: whole files and symlinks the collection owns, and the directories it
created (removed again, deepest first, once empty).

Each ``plan_*`` reads the node and returns a change (``changed``, ``diff`` and what ``apply_*`` needs);
``plan_whole_files`` plans every file and link the parts of a node want, and removes those of the record that no
part wants any more. Standard library only (Python 3.8+).
"""

from __future__ import annotations

import os

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, make_dirs, read_text


def plan_file(path, content, mode=0o644):
    """Change of one whole file the collection owns (content None: remove it)."""
    old = read_text(path)
    changed = old != content
    return dict(changed=changed, path=path, content=content, mode=mode,
                diff=dict(before=old or "", after=content or "", before_header=path, after_header=path))


def apply_file(change):
    try:
        if change["content"] is None:
            if os.path.lexists(change["path"]):
                os.unlink(change["path"])
        else:
            change["created_dirs"] = atomic_write(change["path"], change["content"], mode=change["mode"],
                                                  create_dirs=True)
    except OSError as exc:
        raise EngineError("cannot write %s: %s" % (change["path"], exc))


def plan_compiled_removal(path):
    """Removal of a compiled Python file (binary: the diff names it and its size)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    return dict(changed=size is not None, path=path, content=None, mode=0o644,
                diff=dict(before="" if size is None else "(compiled Python, %d bytes)\n" % size, after="",
                          before_header=path, after_header=path))


def plan_link(path, target):
    """Change of one symlink (target None: remove it, only when it points where ours would)."""
    try:
        current = os.readlink(path)
    except OSError:
        current = None
    changed = current != target
    return dict(changed=changed, path=path, target=target,
                diff=dict(before="%s -> %s\n" % (path, current) if current else "",
                          after="%s -> %s\n" % (path, target) if target else "",
                          before_header=path, after_header=path))


def apply_link(change):
    try:
        if os.path.lexists(change["path"]):
            os.unlink(change["path"])
        if change["target"]:
            change["created_dirs"] = make_dirs(os.path.dirname(change["path"]))
            os.symlink(change["target"], change["path"])
    except OSError as exc:
        raise EngineError("cannot write the link %s: %s" % (change["path"], exc))


def plan_whole_files(plan, files, links, record):
    """Add to ``plan`` the files ({path: (content, mode)}) and links ({path: target}) the parts want, after the
    removal of the record's files and links that no part wants any more."""
    old_files = set((record or {}).get("files") or [])
    for path in sorted(old_files - set(files)):
        plan.add("file %s (removed)" % path, plan_file(path, None), apply_file)
        for compiled in compiled_forms(path):
            plan.add("file %s (removed)" % compiled, plan_compiled_removal(compiled), apply_file)
    for path in sorted(files):
        content, mode = files[path]
        plan.add("file %s" % path, plan_file(path, content, mode), apply_file)
    for path in sorted(set((record or {}).get("links") or []) - set(links)):
        plan.add("link %s (removed)" % path, plan_link(path, None), apply_link)
    for path, target in sorted(links.items()):
        plan.add("link %s" % path, plan_link(path, target), apply_link)


def compiled_forms(path):
    """The compiled forms of the Python file ``path`` that Python wrote beside it (``__pycache__/<name>.*.pyc``).

    The restore program of earlier versions let Python write them when it ran at boot; they go with the file.
    """
    if not path.endswith(".py"):
        return []
    cache = os.path.join(os.path.dirname(path), "__pycache__")
    stem = os.path.basename(path)[:-3] + "."
    try:
        names = os.listdir(cache)
    except OSError:
        return []
    paths = (os.path.join(cache, n) for n in sorted(names) if n.startswith(stem) and n.endswith(".pyc"))
    return [p for p in paths if os.path.isfile(p) and not os.path.islink(p)]


def plan_dirs(directories, removing=(), keeping=()):
    """Empty directories podnet.cluster created, removed deepest first (they are empty once ``removing`` goes).
    A directory that holds a path of ``keeping`` (a file or link this run writes or keeps) stays, even when it is
    empty now (the file inside was deleted by hand and is written again)."""
    gone = set(removing)
    kept = set(os.path.dirname(os.path.normpath(path)) for path in keeping)
    rm = []
    for directory in directories:
        if not os.path.isdir(directory) or any(k == directory or k.startswith(directory.rstrip("/") + "/")
                                               for k in kept):
            continue
        left = [os.path.join(directory, e) for e in os.listdir(directory)]
        if all(e in gone or e in rm for e in left):
            rm.append(directory)
            gone.add(directory)
    return dict(changed=bool(rm), directories=rm,
                diff=dict(before="".join(d + "/\n" for d in rm), after="", before_header="directories",
                          after_header="directories"))


def apply_dirs(change):
    for directory in change["directories"]:
        try:
            os.rmdir(directory)
        except OSError:
            pass
