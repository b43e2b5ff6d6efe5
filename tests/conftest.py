# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Shared pytest set-up: import paths, the test tiers, and a guard that the machine's own network namespace is
never changed.

Tiers (markers, set here from where a test lives, so no test file has to remember them):

* ``unit``: everything under tests/unit; no root, no namespace, no lab.
* ``integration``: everything under tests/integration; real network namespaces, so root. Run without root,
  a selection that holds integration tests stops at once with a message (it never skips them silently).
* ``slow``: every integration test but those of ``FAST`` (tests of one module on a namespace or two, the
  collection's own checks): they converge whole labs. ``make check`` leaves them out; ``make test`` runs all.
  A new integration test is slow until it is listed in ``FAST``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# <repo>/.collections/ansible_collections/podnet/cluster -> this checkout (make setup / make collection).
for _path in (REPO / ".collections", REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
# .../podnet/lab -> lab/ (podnet.lab), as make collection links it: also in a checkout set up before lab/ existed
_LAB_LINK = REPO / ".collections" / "ansible_collections" / "podnet" / "lab"
if _LAB_LINK.parent.is_dir() and not _LAB_LINK.is_symlink():
    try:
        _LAB_LINK.symlink_to("../../../lab")
    except FileExistsError:  # another pytest worker made it
        pass

from lib import rootns  # noqa: E402  (needs the path above)

INTEGRATION = REPO / "tests" / "integration"
MARKERS = {
    "unit": "no root, no namespace: runs anywhere",
    "integration": "real network namespaces on this machine: needs root",
    "slow": "converges whole labs; left out by make check",
    "scale": "a lab of 30 nodes or more (minutes on this machine); select with -m scale, leave out with -m 'not scale'",
}
# Integration tests quick enough for make check (paths under tests/integration, a file or a directory).
FAST = ("modules", "test_collection.py", "test_lint.py", "test_netns_connection.py", "gce/test_gce_standin.py",
        "verify/test_probe_server.py")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", "%s: %s" % (name, text))


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        if INTEGRATION not in path.parents:
            item.add_marker("unit")
            continue
        item.add_marker("integration")
        rel = path.relative_to(INTEGRATION)
        if not any(rel == Path(fast) or Path(fast) in rel.parents for fast in FAST):
            item.add_marker("slow")


def pytest_collection_finish(session):
    if os.geteuid() == 0:
        return
    needs_root = [item.nodeid for item in session.items if item.get_closest_marker("integration")]
    if needs_root:
        raise pytest.UsageError(
            "%d selected tests are integration tests: they build network namespaces and need root (run as root, "
            "or select the unit tier: pytest -m unit). First: %s" % (len(needs_root), needs_root[0]))


@pytest.fixture(scope="session", autouse=True)
def root_netns_unchanged():
    """Snapshot the root network namespace at the start; fail the session if it differs at the end."""
    before = rootns.snapshot()
    yield before
    changes = rootns.diff(before, rootns.snapshot())
    if changes:
        pytest.fail("the machine's own network namespace changed during the tests:\n" + changes, pytrace=False)
