# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The one rule for network interface names in podnet.cluster, for the controller and the nodes alike.

Standard library only: the controller's document checks, the engine, the iptables rule renderer and the
modules all call ``ifname_problem``, and the boot-time restore program carries this file.

The rule is the kernel's (``dev_valid_name``): 1 to 15 bytes (IFNAMSIZ 16 with its NUL), not ``.`` or
``..``, no ``/``, ``:`` or whitespace. Within it podnet.cluster accepts only names that pass unquoted through
every text it writes (``ip -batch`` lines, which split on blanks and read quotes and ``#``; iptables-restore
lines; sysctl keys; systemd unit text; JSON): ASCII letters, digits, ``_``, ``.`` and ``-``, not starting with
``-`` (ip and iptables would read an option).
"""

from __future__ import annotations

import re

IFNAMSIZ = 16
_ACCEPTED = re.compile(r"^[A-Za-z0-9_.-]+$")
_KERNEL_REFUSES = re.compile(r"[/:\s]")


def ifname_problem(name):
    """What is wrong with ``name`` as an interface name, in words, or ``None`` when it is accepted.

    The words complete a sentence that names the variable, e.g. ``"podnet_bridge='br0;x' " + problem``.
    """
    if not isinstance(name, str):
        return "is not an interface name (a string)"
    if not name:
        return "is empty, not an interface name"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size >= IFNAMSIZ:
        return "is %d bytes long; the kernel takes interface names of at most %d" % (size, IFNAMSIZ - 1)
    if name in (".", ".."):
        return "is not an interface name: the kernel refuses '.' and '..'"
    bad = sorted(set(_KERNEL_REFUSES.findall(name)))
    if bad:
        return "is not an interface name: the kernel refuses %s in it" % ", ".join(repr(c) for c in bad)
    if not _ACCEPTED.match(name):
        others = sorted(set(c for c in name if not _ACCEPTED.match(c)))
        return ("has %s: podnet.cluster takes interface names of the letters A-Z a-z, digits, '_', '.' and '-' "
                "only, which every file and command line it writes carries unquoted" % ", ".join(repr(c) for c in others))
    if name.startswith("-"):
        return "starts with '-', which ip and iptables read as an option"
    return None


def valid_ifname(name):
    """True for an interface name podnet.cluster accepts (``ifname_problem`` is ``None``)."""
    return ifname_problem(name) is None
