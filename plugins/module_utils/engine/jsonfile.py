# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The JSON-object file engine (for example /etc/docker/daemon.json): merge keys, never lose the rest.

Standard library only. Existing keys, their order and the file's mode are kept; a file that is not a JSON
object, or that holds a refused key, is never written.
"""

from __future__ import annotations

import json
import os

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, file_mode, read_text

ABSENT = "__podnet_absent__"


def same(a, b):
    """JSON equality (true is not 1, key order does not matter)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def dump(obj):
    return json.dumps(obj, indent=2) + "\n"


def parse_mode(value):
    if value is None:
        return None
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise EngineError("mode %r is not an octal number such as 0644" % (value,))
    if not 0 <= mode <= 0o7777:
        raise EngineError("mode %r is out of range" % (value,))
    return mode


def read_object(path):
    """(object, text or None) of a JSON-object file; a missing or empty file is {}. EngineError otherwise."""
    if os.path.isdir(path):
        raise EngineError("%s is a directory, not a JSON file" % path)
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineError("cannot read %s: %s" % (path, exc))
    if text is None or not text.strip():
        return {}, text
    try:
        current = json.loads(text)
    except ValueError as exc:
        raise EngineError("%s is not valid JSON (%s); it was left untouched: fix or remove it" % (path, exc))
    if not isinstance(current, dict):
        raise EngineError("%s holds a JSON %s, not an object; it was left untouched"
                          % (path, type(current).__name__.replace("list", "array").replace("str", "string")))
    return current, text


def plan_json(path, set_keys=None, remove=(), refuse=None, mode=None, create_dirs=False, restore=None):
    """The whole change of one JSON object file.

    ``restore`` maps keys to the values to put back (``ABSENT``: remove the key) when they still hold the value
    podnet.cluster set (``restore_if``, same keys); used by teardown and transitions.
    """
    setv = dict(set_keys or {})
    remove = list(remove or [])
    refuse = dict(refuse or {})
    mode = parse_mode(mode)
    both = sorted(set(setv) & set(remove))
    if both:
        raise EngineError("key(s) %s of %s are both in set and remove" % (", ".join(both), path))
    for key in setv:
        if key in refuse:
            raise EngineError("key %s of %s is both to set and refused: %s" % (key, path, refuse[key]))
    current, text = read_object(path)
    created = text is None
    found = [k for k in refuse if k in current]
    if found:
        raise EngineError("%s has key(s) podnet.cluster refuses; nothing was written: %s"
                          % (path, "; ".join("%s (%s)" % (k, refuse[k]) for k in found)), refused=found)
    parent = os.path.dirname(os.path.abspath(path))
    if created and not os.path.isdir(parent) and not create_dirs:
        raise EngineError("directory %s of %s does not exist (set create_dirs)" % (parent, path))
    new = dict(current)
    set_done, removed_keys = [], []
    for key, value in setv.items():
        if key not in new or not same(new[key], value):
            new[key] = value
            set_done.append(key)
    for key in remove:
        if key in new:
            del new[key]
            removed_keys.append(key)
    for key, value in (restore or {}).items():
        if value == ABSENT:
            if key in new:
                del new[key]
                removed_keys.append(key)
        elif key not in new or not same(new[key], value):
            new[key] = value
            set_done.append(key)
    content_changed = (created and bool(new)) or bool(set_done) or bool(removed_keys)
    cur_mode = file_mode(path)
    mode_changed = not created and mode is not None and cur_mode != mode
    after_text = dump(new)
    diff = dict(before=text if text is not None else "", after=after_text if content_changed else (text or ""),
                before_header=path, after_header=path)
    if mode_changed:
        diff["before_header"] = "%s (mode %04o)" % (path, cur_mode)
        diff["after_header"] = "%s (mode %04o)" % (path, mode)
    return dict(changed=content_changed or mode_changed, path=path, set_keys=set_done, removed_keys=removed_keys,
                created=created and content_changed, content=new, before=current,
                _write=dict(content_changed=content_changed, text=after_text,
                            mode=mode if mode is not None else (cur_mode if cur_mode is not None else 0o644),
                            create_dirs=create_dirs),
                diff=diff)


def apply_json(change):
    w = change["_write"]
    try:
        if w["content_changed"]:
            change["created_dirs"] = atomic_write(change["path"], w["text"], mode=w["mode"],
                                                  create_dirs=w["create_dirs"])
        else:
            os.chmod(change["path"], w["mode"])
    except OSError as exc:
        raise EngineError("cannot write %s: %s" % (change["path"], exc))
