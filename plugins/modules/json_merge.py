#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: json_merge
short_description: Merge top-level keys into a JSON object file (for example /etc/docker/daemon.json)
description:
  - Sets the keys of I(set) and removes the keys of I(remove) in the JSON object stored in I(path), keeping every
    other key and the existing key order (new keys are appended).
  - Fails without writing when the file has a key listed in I(refuse) (for example C(bip) next to C(bridge), which
    Docker rejects as mutually exclusive), when the file is not valid JSON, or when it does not hold an object. Such
    a file is never overwritten.
  - Writes with an indent of 2 and a final newline, atomically, only when the parsed content changes (or the mode
    differs). A missing or empty file counts as C({}). Nothing is written in check mode.
version_added: 0.1.0
author:
  - podnet.cluster maintainers
options:
  path:
    description: The JSON file.
    type: path
    required: true
  set:
    description: Top-level keys and the values they must have (any JSON value).
    type: dict
    default: {}
  remove:
    description: Top-level keys to remove when present.
    type: list
    elements: str
    default: []
  refuse:
    description:
      - Top-level keys that must not be present, with the reason given in the error. A key of I(set) that is refused
        is an error as well.
    type: dict
    default: {}
  mode:
    description: Permissions of the file (octal string or number).
    type: raw
    default: "0644"
  create_dirs:
    description: Create the parent directories when missing (otherwise a missing directory is an error).
    type: bool
    default: false
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Docker puts containers on the pod bridge and leaves NAT and iptables to podnet.cluster
  podnet.cluster.json_merge:
    path: /etc/docker/daemon.json
    set:
      bridge: cbr0
      iptables: false
      ip-masq: false
      mtu: 1450
    refuse:
      bip: "Docker refuses bip together with bridge; remove bip, the pod bridge carries the gateway address"
    create_dirs: true
"""

RETURN = r"""
path:
  description: The file.
  returned: always
  type: str
set_keys:
  description: Keys whose value was set or changed.
  returned: always
  type: list
  elements: str
removed_keys:
  description: Keys removed.
  returned: always
  type: list
  elements: str
created:
  description: Whether the file was created.
  returned: always
  type: bool
content:
  description: The resulting object.
  returned: always
  type: dict
diff:
  description: Before and after text of the file.
  returned: always
  type: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, file_mode, read_text


def _mode(module, value):
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            module.fail_json(msg="mode %r is not an octal number such as 0644" % (value,))
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg="mode %r is out of range" % (value,))
    return mode


def _same(a, b):
    """JSON equality (true is not 1, key order does not matter)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _dump(obj):
    return json.dumps(obj, indent=2) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            set=dict(type="dict", default={}),
            remove=dict(type="list", elements="str", default=[]),
            refuse=dict(type="dict", default={}),
            mode=dict(type="raw", default="0644"),
            create_dirs=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    mode = _mode(module, p["mode"])
    setv = p["set"] or {}
    remove = p["remove"] or []
    refuse = p["refuse"] or {}

    both = sorted(set(setv) & set(remove))
    if both:
        module.fail_json(msg="key(s) %s of %s are both in set and remove" % (", ".join(both), path))
    for key in setv:
        if key in refuse:
            module.fail_json(msg="key %s of %s is both to set and refused: %s" % (key, path, refuse[key]))

    if os.path.isdir(path):
        module.fail_json(msg="%s is a directory, not a JSON file" % path)
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, exc))
    created = text is None
    if text is None or not text.strip():
        current = {}
    else:
        try:
            current = json.loads(text)
        except ValueError as exc:
            module.fail_json(msg="%s is not valid JSON (%s); it was left untouched: fix or remove it" % (path, exc))
        if not isinstance(current, dict):
            module.fail_json(msg="%s holds a JSON %s, not an object; it was left untouched"
                                 % (path, type(current).__name__.replace("list", "array").replace("str", "string")))
    found = [k for k in refuse if k in current]
    if found:
        module.fail_json(msg="%s has key(s) podnet.cluster refuses; nothing was written: %s"
                             % (path, "; ".join("%s (%s)" % (k, refuse[k]) for k in found)), refused=found)

    parent = os.path.dirname(os.path.abspath(path))
    if created and not os.path.isdir(parent) and not p["create_dirs"]:
        module.fail_json(msg="directory %s of %s does not exist (set create_dirs)" % (parent, path))

    new = dict(current)
    set_keys, removed_keys = [], []
    for key, value in setv.items():
        if key not in new or not _same(new[key], value):
            new[key] = value
            set_keys.append(key)
    for key in remove:
        if key in new:
            del new[key]
            removed_keys.append(key)

    content_changed = created or bool(set_keys) or bool(removed_keys)
    cur_mode = file_mode(path)
    mode_changed = not created and cur_mode != mode
    changed = content_changed or mode_changed
    after_text = _dump(new)

    if changed and not module.check_mode:
        try:
            if content_changed:
                atomic_write(path, after_text, mode=mode, create_dirs=p["create_dirs"])
            else:
                os.chmod(path, mode)
        except OSError as exc:
            module.fail_json(msg="cannot write %s: %s" % (path, exc))

    diff = dict(before=text if text is not None else "", after=after_text if content_changed else (text or ""),
                before_header=path, after_header=path)
    if mode_changed:
        diff["before_header"] = "%s (mode %04o)" % (path, cur_mode)
        diff["after_header"] = "%s (mode %04o)" % (path, mode)
    module.exit_json(changed=changed, path=path, set_keys=set_keys, removed_keys=removed_keys, created=created,
                     content=new, diff=diff)


if __name__ == "__main__":
    main()
