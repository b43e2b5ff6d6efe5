# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the vxlan scenario: the lab's nodes as testinfra hosts, the plan, the inventory."""

from __future__ import annotations

import sys
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]
REPO = SCENARIO.parents[1]
for _path in (REPO / ".collections", REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from lib.molecule_scenario import make_fixtures  # noqa: E402

globals().update(make_fixtures(SCENARIO))
