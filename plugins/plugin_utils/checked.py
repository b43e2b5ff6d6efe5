# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""A node's check in this run as proof that its change would change nothing (podnet.cluster.node_state, option
``checked``): the role's preflight checks every node in check mode before any change; the apply that follows need
not ask a node again whose check found nothing to change for the very same document."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Mapping

from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain

# What a call that changes nothing returns, taken over from the check that proved it
RESULT_KEYS = ("changes", "docker_changed", "docker_restart", "held", "record", "uplink_release", "uplink_move",
               "recorded_fabric", "restarted", "document_digest", "would_change")


def document_digest(document: Dict[str, Any], state: str, allow_readdress: bool) -> str:
    """What a node is checked or changed against, as one value: its document, the state and this run's
    confirmation to re-address."""
    data = json.dumps([document, state, bool(allow_readdress)], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def proven_unchanged(checked: Any, digest: str) -> bool:
    """Whether ``checked``, the registered result of this run's check of the node, proved that the document of
    ``digest`` changes nothing there, with no uplink to put back first (that step changes the node in between).
    Reads only those few keys: the result also holds the document it was called with (``invocation``)."""
    return (isinstance(checked, Mapping) and not checked.get("failed") and not checked.get("skipped")
            and checked.get("document_digest") == digest and checked.get("would_change") is False
            and not checked.get("uplink_release"))


def unchanged_result(checked: Mapping[str, Any]) -> Dict[str, Any]:
    """The result of a call that changes nothing, from the check that proved it (plain data, its keys only)."""
    result = {key: plain(checked[key]) for key in RESULT_KEYS if key in checked}
    result.update(changed=False, msg="No change: this run's check of the node found nothing to change")
    return result
