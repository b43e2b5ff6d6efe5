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
  - Supports check mode and diff mode.
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
  returned: always
  type: dict
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, read_text

HEADER = ("# Managed by Ansible (podnet.cluster.sysctl). The whole file belongs to podnet.cluster:\n"
          "# local changes are overwritten. Kernel settings of the Kubernetes pod network.\n")


def canon_key(key):
    """Key in slash form relative to /proc/sys, as sysctl(8) interprets it."""
    key = key.strip().lstrip("-").strip()
    if "/" in key:
        return key.strip("/")
    return key.replace(".", "/")


def norm_value(value):
    if isinstance(value, bool):
        value = int(value)
    return " ".join(str(value).split())


def parse_conf(text):
    """[(line_number, key, value)] of a sysctl.conf style text."""
    res = []
    for num, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if not key:
            continue
        res.append((num, key.lstrip("-").strip(), value.strip()))
    return res


def boot_files(search_paths):
    """Effective sysctl.d files: {basename: path}, first directory wins."""
    files = {}
    for directory in search_paths:
        for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*.conf"))):
            name = os.path.basename(path)
            if name not in files and os.path.isfile(path):
                files[name] = path
    return files


def main():
    module = AnsibleModule(
        argument_spec=dict(
            settings=dict(type="dict", required=True),
            file=dict(type="path", default="/etc/sysctl.d/90-podnet-cluster.conf"),
            apply=dict(type="bool", default=True),
            only_net=dict(type="bool", default=True),
            conflicts=dict(type="str", choices=["fail", "warn", "ignore"], default="fail"),
            search_paths=dict(type="list", elements="path",
                              default=["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d",
                                       "/usr/lib/sysctl.d", "/lib/sysctl.d"]),
            sysctl_conf=dict(type="path", default="/etc/sysctl.conf"),
            proc_root=dict(type="path", default="/proc/sys"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path = p["file"]

    # ---- desired
    settings = {}
    for key, value in p["settings"].items():
        key = str(key).strip()
        ck = canon_key(key)
        if not ck or ".." in ck.split("/") or any(c.isspace() for c in key) or "=" in key:
            module.fail_json(msg="sysctl key %r is not valid" % key)
        if p["only_net"] and not ck.startswith("net/"):
            module.fail_json(msg="sysctl key %s is outside net.*: only net.* keys are per network namespace; other "
                                 "keys are global to the kernel and podnet.cluster refuses to set them (only_net)"
                             % key)
        if value is None or "\n" in str(value):
            module.fail_json(msg="sysctl key %s has no value or a multi-line value" % key)
        if ck in {canon_key(k) for k in settings}:
            module.fail_json(msg="sysctl key %s is given twice (in two spellings)" % key)
        settings[key] = norm_value(value)
    content = HEADER + "".join("%s = %s\n" % (k, settings[k]) for k in sorted(settings))
    ours_by_canon = {canon_key(k): k for k in settings}

    # ---- boot-time conflicts
    found = []
    name = os.path.basename(path)
    real_ours = os.path.realpath(path)
    effective = boot_files(p["search_paths"])
    late = []
    if name in effective and os.path.realpath(effective[name]) != real_ours and os.path.exists(effective[name]):
        found.append(dict(file=effective[name], line=0, key="*", value="(whole file)", ours=path,
                          msg="%s has the same name as %s and hides it at boot (sysctl --system reads only the "
                              "first file of a name, in search_paths order)" % (effective[name], path)))
    for fname in sorted(effective):
        if fname > name:
            late.append(effective[fname])
    if p["sysctl_conf"]:
        late.append(p["sysctl_conf"])
    for lpath in late:
        if os.path.realpath(lpath) == real_ours:
            continue
        text = read_text(lpath) if os.path.isfile(lpath) else None
        if text is None:
            continue
        for num, key, value in parse_conf(text):
            ck = canon_key(key)
            if ck in ours_by_canon:
                ours = ours_by_canon[ck]
                if norm_value(value) != settings[ours]:
                    found.append(dict(file=lpath, line=num, key=key, value=norm_value(value), ours=settings[ours],
                                      msg="%s line %d sets %s = %s, overriding our %s = %s at boot"
                                          % (lpath, num, key, norm_value(value), ours, settings[ours])))
    if found and p["conflicts"] == "fail":
        module.fail_json(msg="sysctl settings of podnet.cluster (%s) would be overridden at boot: %s. Remove those "
                             "lines or make them agree (or set conflicts=warn)."
                             % (path, "; ".join(f["msg"] for f in found)), conflicts=found)
    if found and p["conflicts"] == "warn":
        for f in found:
            module.warn(f["msg"])

    # ---- live values
    live_before, live_after, changed_keys = {}, {}, []
    to_write = []
    if p["apply"]:
        for key in sorted(settings):
            proc = os.path.join(p["proc_root"], canon_key(key))
            try:
                with open(proc, "r") as handle:
                    cur = norm_value(handle.read())
            except FileNotFoundError:
                module.fail_json(msg="sysctl key %s does not exist on this node (%s is missing; is the kernel module, "
                                     "for example br_netfilter, loaded?)" % (key, proc))
            except OSError as exc:
                module.fail_json(msg="cannot read sysctl key %s from %s: %s" % (key, proc, exc))
            live_before[key] = cur
            live_after[key] = settings[key]
            if cur != settings[key]:
                changed_keys.append(key)
                to_write.append((key, proc, settings[key]))
    else:
        for key in settings:
            live_before[key] = None
            live_after[key] = None

    old = read_text(path)
    file_changed = old != content
    changed = file_changed or bool(to_write)

    if changed and not module.check_mode:
        if file_changed:
            try:
                atomic_write(path, content, mode=0o644, create_dirs=True)
            except OSError as exc:
                module.fail_json(msg="cannot write %s: %s" % (path, exc))
        for key, proc, value in to_write:
            try:
                with open(proc, "w") as handle:
                    handle.write(value + "\n")
            except OSError as exc:
                module.fail_json(msg="cannot set sysctl %s = %s through %s: %s" % (key, value, proc, exc),
                                 file_changed=file_changed)
        for key, proc, value in to_write:
            try:
                with open(proc, "r") as handle:
                    live_after[key] = norm_value(handle.read())
            except OSError:
                pass
            if live_after[key] != value:
                module.fail_json(msg="sysctl %s was written as %s but reads back %s (%s)"
                                     % (key, value, live_after[key], proc))

    module.exit_json(
        changed=changed,
        file=path,
        file_changed=file_changed,
        changed_keys=changed_keys,
        live_before=live_before,
        live_after=live_after,
        conflicts=[{k: v for k, v in f.items() if k != "msg"} for f in found],
        diff=dict(before=old or "", after=content, before_header=path, after_header=path),
    )


if __name__ == "__main__":
    main()
