# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Part of the node engine: the boot unit, the Docker drop-in, the link that enables the unit, and the restore
program they run (whole files: engine.files plans them; their text: engine.units). Standard library only."""

from __future__ import annotations

import sys

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.engine.units import (
    RESTORE_NAME,
    interpreter_problem,
    lib_files,
    unit_files,
    unit_links,
)

KERNEL = False          # files only: nothing of it when the plan is limited to the kernel


def plan(ctx):
    if not ctx.present:
        return
    doc = ctx.doc
    if doc.get("units", {}).get("enabled"):
        problem = interpreter_problem(sys.executable)
        if problem:
            raise EngineError("node %s: %s. Set ansible_python_interpreter for this host to a Python 3.8+ "
                              "that stays installed (the boot unit and the Docker drop-in run the restore with "
                              "it)" % (doc["node"], problem))
    for path, text in unit_files(doc).items():
        ctx.files[path] = (text, 0o644)
    for path, text in lib_files(doc).items():
        ctx.files[path] = (text, 0o755 if path.endswith(RESTORE_NAME) else 0o644)
    ctx.links.update(unit_links(doc))
