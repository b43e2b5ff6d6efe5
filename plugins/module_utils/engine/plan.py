# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""A node's plan: the changes of its parts in apply order (each with its own apply function), the warnings, and
the record to write after them; what a report shows of one change. Standard library only (Python 3.8+)."""

from __future__ import annotations


class Plan(object):
    """The parts of one node's change, in apply order, and the record to write after them."""

    def __init__(self):
        self.parts = []       # (name, change, apply function)
        self.warnings = []
        self.record = None
        self.record_change = None
        self.docker_changed = False

    def add(self, name, change, func):
        self.parts.append((name, change, func))

    @property
    def changed(self):
        return any(change["changed"] for _n, change, _f in self.parts)

    def summary(self, commands=True):
        """What changed, by part; without ``commands`` the batch lines and restore texts are left out."""
        out = {name: short(change) for name, change, _f in self.parts if change["changed"]}
        if not commands:
            for part in out.values():
                part.pop("commands", None)
                part.pop("restore", None)
        return out

    def diff(self):
        out = []
        for name, change, _f in self.parts:
            d = change.get("diff")
            if change["changed"] and d:
                out.append(dict(d, before_header="%s: %s" % (name, d.get("before_header", "")),
                                after_header="%s: %s" % (name, d.get("after_header", ""))))
        return out


def short(change):
    """What a report shows of one change."""
    keep = ("commands", "added", "removed", "replaced", "restore", "set_keys", "removed_keys", "changed_keys",
            "file_changed", "created", "deleted", "path", "target")
    return {k: v for k, v in change.items() if k in keep and v not in (None, [], {}, "")}
