# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""A node's check in this run as proof that its change changes nothing (plugin_utils/checked.py)."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.plugin_utils.checked import (
    document_digest,
    proven_unchanged,
    unchanged_result,
)

DOC = {"version": 1, "node": "ash", "bridge": {"name": "cbr0", "addresses": ["10.9.0.1/24"]}, "pod_cidrs": ["10.9.0.0/24"]}
DIGEST = document_digest(DOC, "present", False)


def check(**over):
    result = {"changed": False, "changes": {}, "docker_changed": False, "held": {"recorded": ["10.9.0.0/24"]},
              "record": "/etc/podnet/node.json", "uplink_release": None, "uplink_move": None,
              "recorded_fabric": "l2_routes", "document_digest": DIGEST, "would_change": False}
    result.update(over)
    return result


def test_the_digest_follows_the_document_the_state_and_the_confirmation():
    assert document_digest(dict(DOC), "present", False) == DIGEST  # the same document, built again
    assert document_digest(dict(DOC, pod_cidrs=["10.9.1.0/24"]), "present", False) != DIGEST
    assert document_digest(DOC, "absent", False) != DIGEST
    assert document_digest(DOC, "present", True) != DIGEST


def test_a_check_that_found_nothing_to_change_for_the_same_document_is_proof():
    assert proven_unchanged(check(), DIGEST)


def test_anything_else_is_no_proof():
    assert not proven_unchanged(check(would_change=True), DIGEST)  # the check found a change (changed_when hid it)
    assert not proven_unchanged(check(), document_digest(DOC, "present", True))  # another document or confirmation
    assert not proven_unchanged(check(uplink_release={"bridge": "cbr0", "state": "absent"}), DIGEST)
    assert not proven_unchanged(check(failed=True), DIGEST)
    assert not proven_unchanged({"skipped": True, "changed": False}, DIGEST)  # the check did not run
    assert not proven_unchanged(check(would_change=None), DIGEST)  # a result without it (an older action)
    assert not proven_unchanged({}, DIGEST)
    assert not proven_unchanged(None, DIGEST)


def test_the_result_is_the_checks_with_no_change():
    result = unchanged_result(check(changed=True, warnings=["w"], invocation={"x": 1}))
    assert result["changed"] is False
    assert result["held"] == {"recorded": ["10.9.0.0/24"]} and result["record"] == "/etc/podnet/node.json"
    assert result["document_digest"] == DIGEST and result["would_change"] is False
    assert "warnings" not in result and "invocation" not in result  # the check's warnings were shown once
    assert "nothing to change" in result["msg"]
