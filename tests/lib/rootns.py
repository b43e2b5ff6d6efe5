# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Snapshot of the machine's own (root) network namespace, to prove tests leave it alone.

``snapshot()`` reads, without changing anything: addresses, links (name and
state), every routing table and rule (IPv4 and IPv6), the iptables and
ip6tables rule sets (counters and comment/date lines stripped), the nftables
rule set (counters stripped) and the two forwarding switches. ``diff(a, b)``
is an empty string when nothing changed.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import stat
import subprocess
from typing import Dict, List, Optional, Sequence

_LFT = re.compile(r"\s+(valid|preferred)_lft \S+")
_COUNTERS = re.compile(r"\[\d+:\d+\]")
_NFT_COUNTERS = re.compile(r"packets \d+ bytes \d+")

COMMANDS: Dict[str, List[str]] = {
    "ip -o addr": ["ip", "-o", "addr"],
    "ip -o link": ["ip", "-o", "link"],
    "ip route show table all": ["ip", "route", "show", "table", "all"],
    "ip -6 route show table all": ["ip", "-6", "route", "show", "table", "all"],
    "ip rule": ["ip", "rule"],
    "ip -6 rule": ["ip", "-6", "rule"],
    "iptables-save": ["iptables-save"],
    "ip6tables-save": ["ip6tables-save"],
    "nft list ruleset": ["nft", "list", "ruleset"],
}
FILES = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv6/conf/all/forwarding",
)


def _run(argv: List[str]) -> str:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "<cannot run %s: %s>" % (argv[0], exc)
    if proc.returncode != 0:
        return "<%s failed rc=%d: %s>" % (" ".join(argv), proc.returncode, proc.stderr.strip())
    return proc.stdout


def _links(text: str) -> str:
    """'name state' per link: 'ip -o link' also shows counters-like noise we do not want."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\d+:\s+(\S+?):\s+<([^>]*)>.*?\bstate (\S+)", line)
        out.append("%s <%s> %s" % m.groups() if m else line)
    return "\n".join(sorted(out)) + "\n"


def _clean(key: str, text: str) -> str:
    if key == "ip -o link":
        return _links(text)
    if key == "ip -o addr":
        text = _LFT.sub("", text)
    if key.endswith("tables-save"):
        text = "\n".join(_COUNTERS.sub("", l) for l in text.splitlines() if not l.startswith("#")) + "\n"
    if key.startswith("nft"):
        text = _NFT_COUNTERS.sub("", text)
    return text


def snapshot(netns: Optional[str] = None) -> Dict[str, str]:
    """A network namespace's state as {what: normalized text} (the root namespace by default). Read-only."""
    prefix = ["nsenter", "--net=/run/netns/%s" % netns, "--"] if netns else []
    snap = {key: _clean(key, _run(prefix + argv)) for key, argv in COMMANDS.items()}
    for path in FILES:
        if netns:
            snap[path] = _run(prefix + ["cat", path])
            continue
        try:
            with open(path) as fh:
                snap[path] = fh.read()
        except OSError as exc:
            snap[path] = "<%s>" % exc
    return snap


def files_snapshot(root: str, skip: Sequence[str] = ()) -> Dict[str, str]:
    """{relative path: "mode sha256" (or "-> target", "dir mode")} of every entry under ``root``."""
    out: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> %s" % os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir %o" % stat.S_IMODE(st.st_mode)
            else:
                with open(path, "rb") as fh:
                    out[rel] = "%o %s" % (stat.S_IMODE(st.st_mode), hashlib.sha256(fh.read()).hexdigest())
    return out


def diff(before: Dict[str, str], after: Dict[str, str]) -> str:
    """Unified diff of two snapshots, section by section; '' when they are equal."""
    parts = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, ""), after.get(key, "")
        if a != b:
            parts.append("".join(difflib.unified_diff(
                a.splitlines(True), b.splitlines(True), "before: " + key, "after: " + key)))
    return "\n".join(parts)
