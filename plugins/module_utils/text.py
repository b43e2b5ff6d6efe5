# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Short texts of long lists, for messages: the first items and how many more there are.

Used on the nodes (the engine, the GCE module) and on the controller (the actions' error lists); it has no
imports, so the boot-time restore program can ship it as it is.
"""

from __future__ import annotations


def capped(items, count, more="... and %d more"):
    """The first ``count`` of ``items`` (a new list), with ``more % n`` appended when ``n`` more were left out."""
    items = list(items)
    if len(items) <= count:
        return items
    return items[:count] + [more % (len(items) - count)]


def limit(items, count, sep="; "):
    """The first ``count`` items joined with ``sep``, with how many more there are."""
    return sep.join(capped(items, count))
