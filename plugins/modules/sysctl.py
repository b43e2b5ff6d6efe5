#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sysctl
short_description: Own one sysctl.d file, apply its net.* values live, and detect files that override it at boot
description:
  - Writes I(file) (the whole file belongs to the collection) with a header comment and one C(key = value) line per
    setting, sorted by key, atomically and only when its content differs.
  - With I(apply), writes each live value that differs directly to C(/proc/sys/<key with dots as slashes>). It
    never runs C(sysctl --system) or C(sysctl -p), which would re-apply every file of the host, including global
    (non-network) keys.
  - With I(only_net) (the default) keys outside C(net.) are refused, because only those are per network namespace.
  - Detects files that would override the collection's values at boot, the way C(sysctl --system) (procps) orders
    them; files of all I(search_paths) are sorted by file name, a name found in an earlier directory hides the same
    name in later ones (C(/etc) overrides C(/usr/lib)), later files win, and I(sysctl_conf) is applied last. A file
    that sorts after ours, or I(sysctl_conf), and sets one of our keys to another value is a conflict, and so is a
    file with our name that hides ours. I(conflicts) decides whether that fails (before any write), warns or is
    ignored.
  - Everything is computed and checked first; all writes happen after, and never in check mode.
version_added: 0.1.0
author:
  - podnet.cluster maintainers
extends_documentation_fragment:
  - podnet.cluster.attributes
options:
  settings:
    description:
      - Keys (dotted, for example C(net.ipv4.ip_forward), or slash form C(net/ipv4/conf/eth0.100/forwarding) for
        names that contain dots) and their values.
    type: dict
    required: true
  file:
    description:
      - The file the collection owns.
    type: path
    default: /etc/sysctl.d/90-podnet-cluster.conf
  apply:
    description:
      - Also set the live values through C(/proc/sys). A key that does not exist there is an error (before any
        write).
    type: bool
    default: true
  only_net:
    description:
      - Refuse keys that do not start with C(net.) (or C(net/)).
    type: bool
    default: true
  conflicts:
    description:
      - What to do about files that override our values at boot.
    type: str
    choices: [fail, warn, ignore]
    default: fail
  search_paths:
    description:
      - Directories read by C(sysctl --system), highest precedence first.
    type: list
    elements: path
    default: [/etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d]
  sysctl_conf:
    description:
      - File applied after all of I(search_paths); empty to skip.
    type: path
    default: /etc/sysctl.conf
  proc_root:
    description:
      - Where the live values are (for tests).
    type: path
    default: /proc/sys
notes:
  - Values are compared with white space normalised (C(net.ipv4.ip_local_port_range = 32768 60999) equals the
    tab-separated live value).
"""

EXAMPLES = r"""
- name: Forwarding and bridge netfilter for the pod network
  podnet.cluster.sysctl:
    settings:
      net.ipv4.ip_forward: 1
      net.ipv6.conf.all.forwarding: 1
      net.bridge.bridge-nf-call-iptables: 1
"""

RETURN = r"""
file:
  description: The file written.
  returned: always
  type: str
file_changed:
  description: Whether the file content changed.
  returned: always
  type: bool
changed_keys:
  description: Keys whose live value was (or in check mode would be) changed.
  returned: always
  type: list
  elements: str
live_before:
  description: Live values before the run (key -> value; null when I(apply) is false or the key is absent).
  returned: always
  type: dict
  sample: {net.ipv4.ip_forward: "0"}
live_after:
  description: Live values after the run (as predicted in check mode).
  returned: always
  type: dict
  sample: {net.ipv4.ip_forward: "1"}
conflicts:
  description: Overrides found, each with file, line, key, value (theirs) and ours.
  returned: always
  type: list
  elements: dict
diff:
  description: Before and after content of I(file).
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, diff_only, fail_module
from ansible_collections.podnet.cluster.plugins.module_utils.engine.sysctl import (
    PROC_ROOT,
    SEARCH_PATHS,
    SYSCTL_CONF,
    apply_sysctl,
    plan_sysctl,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            settings=dict(type="dict", required=True),
            file=dict(type="path", default="/etc/sysctl.d/90-podnet-cluster.conf"),
            apply=dict(type="bool", default=True),
            only_net=dict(type="bool", default=True),
            conflicts=dict(type="str", choices=["fail", "warn", "ignore"], default="fail"),
            search_paths=dict(type="list", elements="path", default=list(SEARCH_PATHS)),
            sysctl_conf=dict(type="path", default=SYSCTL_CONF),
            proc_root=dict(type="path", default=PROC_ROOT),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        change = plan_sysctl(p["settings"], p["file"], p["apply"], p["only_net"], p["conflicts"], p["search_paths"],
                             p["sysctl_conf"], p["proc_root"], warn=module.warn)
        if change["changed"] and not module.check_mode:
            apply_sysctl(change)
    except EngineError as exc:
        fail_module(module, exc, file=p["file"])
    for key in ("to_write", "content"):
        change.pop(key)
    module.exit_json(**diff_only(module, change))


if __name__ == "__main__":
    main()
