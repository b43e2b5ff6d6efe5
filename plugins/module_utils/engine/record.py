# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The node document and the node's record of the last run (``<state_dir>/node.json``): where the record
lives, reading it, and the checks every document passes before the engine reads the node.

Standard library only (Python 3.8+).
"""

from __future__ import annotations

import json
import os

from ansible_collections.podnet.cluster.plugins.module_utils.engine import DOCUMENT_VERSION
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import read_text

RECORD_NAME = "node.json"
REQUIRED = ("version", "node", "state_dir", "lib_dir", "bridge", "owned_cidrs", "sysctl", "iptables", "routes")


def record_path(doc):
    return os.path.join(doc["state_dir"], RECORD_NAME)


def read_record(path):
    """The record of the last run, or None. EngineError for a record this code cannot read."""
    text = read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EngineError("%s is not valid JSON (%s): podnet.cluster cannot tell what it owns on this node; "
                          "restore the file from a backup or remove it to start over" % (path, exc))
    if not isinstance(data, dict) or not isinstance(data.get("document"), dict):
        raise EngineError("%s is not a podnet.cluster node record (no 'document' object)" % path)
    version = data.get("version")
    if not isinstance(version, int) or version > DOCUMENT_VERSION:
        raise EngineError("%s was written by a newer podnet.cluster (record version %r; this one reads up to %d): "
                          "upgrade the collection on the controller" % (path, version, DOCUMENT_VERSION))
    return data


def check_document(doc):
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise EngineError("the node document lacks %s" % ", ".join(missing))
    if doc["version"] != DOCUMENT_VERSION:
        raise EngineError("node document version %r is not %d: the controller and this module differ"
                          % (doc["version"], DOCUMENT_VERSION))
    for key in ("state_dir", "lib_dir"):
        if not str(doc[key]).startswith("/"):
            raise EngineError("%s %r is not an absolute path" % (key, doc[key]))
