# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the verify lab tests (the lab itself is described in verify_lab_lib.py)."""

from __future__ import annotations

import pytest

from verify_lab_lib import make_lab, remove_leftovers_of_killed_runs


@pytest.fixture(scope="session", autouse=True)
def _remove_leftovers_of_killed_runs():
    """Namespaces, probe servers and lab directories of earlier runs whose pytest process is gone."""
    remove_leftovers_of_killed_runs()
    yield


@pytest.fixture(scope="module")
def lab():
    """A dual-stack three-node lab, shared by the tests of a module (each test restores what it breaks)."""
    the_lab = make_lab(dual_stack=True)
    try:
        the_lab.build()
        yield the_lab
    finally:
        the_lab.destroy()
