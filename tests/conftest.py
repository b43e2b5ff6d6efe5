# -*- coding: utf-8 -*-
"""Shared pytest set-up: import paths, and a guard that the machine's own network namespace is never changed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# <repo>/.collections/ansible_collections/podnet/cluster -> this checkout (make setup / make collection).
for _path in (REPO / ".collections", REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from lib import rootns  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session", autouse=True)
def root_netns_unchanged():
    """Snapshot the root network namespace at the start; fail the session if it differs at the end."""
    before = rootns.snapshot()
    yield before
    changes = rootns.diff(before, rootns.snapshot())
    if changes:
        pytest.fail("the machine's own network namespace changed during the tests:\n" + changes, pytrace=False)
