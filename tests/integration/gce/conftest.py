# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the gce_routes tests: a fresh Compute Engine API stand-in on loopback for each test."""

from __future__ import annotations

import pytest

from gce_lib import make_standin


@pytest.fixture
def standin():
    with make_standin() as api:
        yield api
