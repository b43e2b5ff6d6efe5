# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The probe's words for a next hop without a neighbour entry: a full table only when the kernel counted one."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.modules.probe import missing_entry
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify_judge import explain

WHERE = "next hop 10.61.1.11 on eth0"
ERROR = "no route to host (connect)"


def test_no_entry_and_no_full_table_is_a_failed_resolution():
    state, words = missing_entry(WHERE, 0)
    assert state == "failed"
    assert words.startswith(WHERE + ": neighbour FAILED (no ARP/NDP answer")
    assert "never full" in words


def test_no_entry_while_the_kernel_refused_entries_is_a_full_table():
    state, words = missing_entry(WHERE, 7)
    assert state == "missing"
    assert "refused 7 new entries for a full table" in words


def test_no_entry_without_statistics_says_may():
    state, words = missing_entry(WHERE, None)
    assert state == "missing" and "may be full" in words


def test_the_judge_calls_only_a_full_table_capacity():
    cell = {"address": "10.61.1.11", "port": 8080, "expect": {}}
    for count, category in ((0, "network"), (3, "capacity")):
        state, words = missing_entry(WHERE, count)
        result = {"error": ERROR, "attempts": 2, "neighbour": state, "diagnosis": words}
        got, reason = explain(cell, result, {})
        assert got == category, reason
        assert WHERE in reason and "(2 attempts)" in reason
    assert "gc_thresh3" in explain(cell, {"error": ERROR, "neighbour": "missing",
                                          "diagnosis": missing_entry(WHERE, 3)[1]}, {})[1]
