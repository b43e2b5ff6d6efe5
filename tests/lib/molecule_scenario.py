# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""What every molecule scenario's testinfra tests share: fixtures of the lab they run on, and checks."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml

from lib.netns_backend import lab_hosts

REPO = Path(__file__).resolve().parents[2]


def make_fixtures(scenario: Path) -> Dict[str, Callable[..., Any]]:
    """Fixtures of a scenario whose lab inventory is <scenario>/inventory/hosts.yml (conftest: globals().update)."""
    inventory_path = scenario / "inventory" / "hosts.yml"
    state_path = scenario / "inventory" / ".podnet_state.yml"

    def groups():
        lab = yaml.safe_load(inventory_path.read_text())["all"]["children"]["podnet_lab"]
        return lab, lab["children"]["podnet_nodes"]

    @pytest.fixture(scope="session")
    def inventory() -> Path:
        assert inventory_path.exists(), "the lab inventory is missing: run molecule create first"
        return inventory_path

    @pytest.fixture(scope="session")
    def node_vars(inventory):
        return groups()[1]["hosts"]

    @pytest.fixture(scope="session")
    def nodes(inventory):
        hosts = lab_hosts(str(inventory))
        return {name: hosts[name] for name in groups()[1]["hosts"]}

    @pytest.fixture(scope="session")
    def state():
        return yaml.safe_load(state_path.read_text())

    return {"inventory": inventory, "node_vars": node_vars, "nodes": nodes, "state": state}


def run_verify(inventory: Path) -> str:
    """Run the verify playbook on the scenario's lab; its output (asserting it succeeded)."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH="%s:%s" % (bin_dir, os.environ.get("PATH", "")))
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "podnet.cluster.verify", "-i", str(inventory)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    return out


def assert_three_rules(out: str, count: int, families=(4,)) -> None:
    """Every cell of pod->pod, node->pod and pod->node passed, per family."""
    for family in families:
        for check in ("pod -> pod", "node -> pod", "pod -> node"):
            cells = count * count
            # the report's wording: "N/N all ok" before verify's sampling change, "N of N ok" since
            assert ("%s (IPv%d): %d/%d all ok" % (check, family, cells, cells) in out
                    or "%s (IPv%d): %d of %d ok" % (check, family, cells, cells) in out), out[-8000:]


def node_routes_wanted(state, node_vars) -> set:
    """{(pod CIDR, node IP of its family)} of every node: what a router of the fabric must route."""
    want = set()
    for name, cidrs in state["nodes"].items():
        ips = node_vars[name]["podnet_node_ip"]
        ips = ips if isinstance(ips, list) else [ips]
        for cidr in cidrs:
            family = ipaddress.ip_network(cidr).version
            want.add((cidr, next(str(ipaddress.ip_interface(i).ip) for i in ips
                                 if ipaddress.ip_interface(i).version == family)))
    return want


def routes_of(host, proto: int = 158) -> set:
    """{(dst, gateway)} of a host's routes with ``proto``, both families."""
    got = set()
    for flag in ("-4", "-6"):
        got |= {(r["dst"], r["gateway"]) for r in json.loads(host.check_output("ip %s -json route show proto %d"
                                                                               % (flag, proto)))}
    return got
