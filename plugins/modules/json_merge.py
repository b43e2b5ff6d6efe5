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
extends_documentation_fragment:
  - podnet.cluster.attributes
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
    description:
      - Permissions of the file (octal string or number). When unset a new file gets C(0644) and an existing file
        keeps its mode (a C(0600) C(daemon.json) stays C(0600)).
    type: raw
  create_dirs:
    description: Create the parent directories when missing (otherwise a missing directory is an error).
    type: bool
    default: false
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
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.engine.jsonfile import apply_json, plan_json
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, diff_only, fail_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            set=dict(type="dict", default={}),
            remove=dict(type="list", elements="str", default=[]),
            refuse=dict(type="dict", default={}),
            mode=dict(type="raw"),
            create_dirs=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        change = plan_json(p["path"], p["set"], p["remove"], p["refuse"], p["mode"], p["create_dirs"])
        if change["changed"] and not module.check_mode:
            apply_json(change)
    except EngineError as exc:
        fail_module(module, exc)
    for key in ("_write", "before"):
        change.pop(key)
    module.exit_json(**diff_only(module, change))


if __name__ == "__main__":
    main()
