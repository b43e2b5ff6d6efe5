# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Texts for messages: long lists cut short (the first items and how many more there are), and why a string
is no network.

Used on the nodes (the engine, the GCE module) and on the controller (the actions' error lists); it imports
only the standard library, so the boot-time restore program can ship it as it is.
"""

from __future__ import annotations

import ipaddress


def capped(items, count, more="... and %d more"):
    """The first ``count`` of ``items`` (a new list), with ``more % n`` appended when ``n`` more were left out."""
    items = list(items)
    if len(items) <= count:
        return items
    return items[:count] + [more % (len(items) - count)]


def names(items, count, sep=", "):
    """``a, b, c and 4 more``: the first ``count`` items joined with ``sep``, then how many more there are."""
    items = list(items)
    text = sep.join(items[:count])
    if len(items) > count:
        text += " and %d more" % (len(items) - count)
    return text


def limit(items, count, sep="; "):
    """The first ``count`` items joined with ``sep``, with how many more there are."""
    return sep.join(capped(items, count))


def network_problem(text, what):
    """Why ``text`` is no network in CIDR form (the message starts with ``what``): its host bits are set (the
    network it lies in is named) or it is no network at all; None when it is one."""
    try:
        ipaddress.ip_network(text, strict=True)
        return None
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return "%s %r is not a network: %s" % (what, text, exc)
        return "%s %s has host bits set (the network is %s)" % (what, text, loose)
