# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The sysctl engine: one owned sysctl.d file, live net.* values through /proc/sys, boot-time overrides.

Standard library only. ``plan_sysctl`` computes the change and the conflicts (files that would override our
values at boot, in ``sysctl --system`` order); ``apply_sysctl`` writes the file and the live values.
"""

from __future__ import annotations

import glob
import os

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, read_text

HEADER = ("# Managed by Ansible (podnet.cluster). The whole file belongs to podnet.cluster:\n"
          "# local changes are overwritten. Kernel settings of the Kubernetes pod network.\n")
SEARCH_PATHS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"
PROC_ROOT = "/proc/sys"


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


def read_live(key, proc_root=PROC_ROOT, missing_ok=False):
    """The live value of ``key``; with ``missing_ok`` None when the key does not exist (yet)."""
    proc = os.path.join(proc_root, canon_key(key))
    try:
        with open(proc, "r") as handle:
            return norm_value(handle.read())
    except FileNotFoundError:
        if missing_ok:
            return None
        raise EngineError("sysctl key %s does not exist on this node (%s is missing; is the kernel module, for "
                          "example br_netfilter, loaded, and is the address family enabled?)" % (key, proc))
    except OSError as exc:
        raise EngineError("cannot read sysctl key %s from %s: %s" % (key, proc, exc))


def validate_settings(settings, only_net=True):
    out = {}
    for key, value in (settings or {}).items():
        key = str(key).strip()
        ck = canon_key(key)
        if not ck or ".." in ck.split("/") or any(c.isspace() for c in key) or "=" in key:
            raise EngineError("sysctl key %r is not valid" % key)
        if only_net and not ck.startswith("net/"):
            raise EngineError("sysctl key %s is outside net.*: only net.* keys are per network namespace; other keys "
                              "are global to the kernel and podnet.cluster refuses to set them (only_net)" % key)
        if value is None or "\n" in str(value):
            raise EngineError("sysctl key %s has no value or a multi-line value" % key)
        if ck in {canon_key(k) for k in out}:
            raise EngineError("sysctl key %s is given twice (in two spellings)" % key)
        out[key] = norm_value(value)
    return out


def key_rank(key):
    """Where a key goes in the write order: 0 router-advertisement acceptance, 1 others, 2 forwarding.

    The kernel purges the default routes learned from router advertisements on every link whose accept_ra is
    not 2 at the moment net.ipv6.conf.all.forwarding goes to 1: accept_ra=2 must be in force first.
    """
    parts = canon_key(key).split("/")
    if parts[-1] == "accept_ra":
        return 0
    if parts[-1] in ("forwarding", "ip_forward"):
        return 2
    return 1


def write_order(keys, teardown=False):
    """``keys`` in the order they are written: an explicit order, never a sorted one.

    Bringing up: accept_ra keys, then the others, forwarding last (each group in the order given). Putting back
    (``teardown``): forwarding first, accept_ra last, so a link never accepts advertisements less while the
    node still forwards.
    """
    keys = list(keys)
    if teardown:
        return sorted(keys, key=lambda k: -key_rank(k))
    return sorted(keys, key=key_rank)


def render_file(settings):
    """The file, its lines in write order: sysctl --system applies them from top to bottom at boot."""
    return HEADER + "".join("%s = %s\n" % (k, settings[k]) for k in write_order(settings))


def find_conflicts(path, settings, search_paths=SEARCH_PATHS, sysctl_conf=SYSCTL_CONF):
    """Files that would override ``settings`` (ours, in ``path``) at boot: [{file, line, key, value, ours, msg}]."""
    found = []
    name = os.path.basename(path)
    real_ours = os.path.realpath(path)
    ours_by_canon = {canon_key(k): k for k in settings}
    effective = boot_files(search_paths)
    late = []
    if name in effective and os.path.realpath(effective[name]) != real_ours and os.path.exists(effective[name]):
        found.append(dict(file=effective[name], line=0, key="*", value="(whole file)", ours=path,
                          msg="%s has the same name as %s and hides it at boot (sysctl --system reads only the first "
                              "file of a name, in search_paths order)" % (effective[name], path)))
    for fname in sorted(effective):
        if fname > name:
            late.append(effective[fname])
    if sysctl_conf:
        late.append(sysctl_conf)
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
    return found


def plan_sysctl(settings, path, apply=True, only_net=True, conflicts="fail", search_paths=SEARCH_PATHS,
                sysctl_conf=SYSCTL_CONF, proc_root=PROC_ROOT, warn=None, not_yet=()):
    """The whole change: file content, live keys to write; EngineError on conflicts (conflicts=fail).

    ``not_yet``: keys of a link the same change creates first (the bridge): missing now, written after it.
    """
    settings = validate_settings(settings, only_net)
    content = render_file(settings) if settings else None
    found = find_conflicts(path, settings, search_paths, sysctl_conf)
    if found and conflicts == "fail":
        raise EngineError("sysctl settings of podnet.cluster (%s) would be overridden at boot: %s. Remove those lines "
                          "or make them agree (or set podnet_sysctl_conflicts=warn)."
                          % (path, "; ".join(f["msg"] for f in found)),
                          conflicts=[{k: v for k, v in f.items() if k != "msg"} for f in found])
    if found and conflicts == "warn" and warn is not None:
        for f in found:
            warn(f["msg"])
    live_before, live_after, changed_keys, to_write = {}, {}, [], []
    for key in write_order(settings):
        if apply:
            cur = read_live(key, proc_root, missing_ok=key in not_yet)
            live_before[key] = cur
            live_after[key] = settings[key]
            if cur != settings[key]:
                changed_keys.append(key)
                to_write.append((key, os.path.join(proc_root, canon_key(key)), settings[key]))
        else:
            live_before[key] = live_after[key] = None
    old = read_text(path)
    file_changed = old != content
    return dict(
        changed=file_changed or bool(to_write),
        file=path,
        file_changed=file_changed,
        content=content,
        changed_keys=changed_keys,
        live_before=live_before,
        live_after=live_after,
        to_write=to_write,
        conflicts=[{k: v for k, v in f.items() if k != "msg"} for f in found],
        diff=dict(before=old or "", after=content or "", before_header=path, after_header=path),
    )


def write_live(key, proc, value):
    try:
        with open(proc, "w") as handle:
            handle.write(value + "\n")
        with open(proc, "r") as handle:
            after = norm_value(handle.read())
    except OSError as exc:
        raise EngineError("cannot set sysctl %s = %s through %s: %s" % (key, value, proc, exc))
    if after != value:
        raise EngineError("sysctl %s was written as %s but reads back %s (%s)" % (key, value, after, proc))
    return after


def apply_sysctl(change):
    """Write the file (or remove it when there is nothing left to hold) and the live values."""
    if change["file_changed"]:
        try:
            if change["content"] is None:
                if os.path.lexists(change["file"]):
                    os.unlink(change["file"])
            else:
                change["created_dirs"] = atomic_write(change["file"], change["content"], mode=0o644,
                                                      create_dirs=True)
        except OSError as exc:
            raise EngineError("cannot write %s: %s" % (change["file"], exc))
    for key, proc, value in change["to_write"]:
        change["live_after"][key] = write_live(key, proc, value)
