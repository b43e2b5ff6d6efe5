"""Fixtures of the gce scenario: the lab's nodes as testinfra hosts, the plan, the inventory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
REPO = SCENARIO.parents[1]
for _path in (REPO / ".collections", REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from lib.netns_backend import lab_hosts  # noqa: E402

INVENTORY = SCENARIO / "inventory" / "hosts.yml"
STATE = SCENARIO / "inventory" / "podnet_state.yml"


def _groups():
    data = yaml.safe_load(INVENTORY.read_text())
    lab = data["all"]["children"]["podnet_lab"]
    return lab, lab["children"]["podnet_nodes"]


@pytest.fixture(scope="session")
def inventory() -> Path:
    assert INVENTORY.exists(), "the lab inventory is missing: run molecule create first"
    return INVENTORY


@pytest.fixture(scope="session")
def node_vars(inventory):
    return _groups()[1]["hosts"]


@pytest.fixture(scope="session")
def nodes(inventory):
    hosts = lab_hosts(str(inventory))
    return {name: hosts[name] for name in _groups()[1]["hosts"]}


@pytest.fixture(scope="session")
def state():
    return yaml.safe_load(STATE.read_text())
