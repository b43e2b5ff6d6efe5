# SPDX-License-Identifier: Apache-2.0
"""The gce fabric: the routes of the lab router exist only because podnet.cluster.gce_routes asked the
(stand-in) Compute Engine API for them; nodes hold no peer routes; verify passes end to end."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from lib.molecule_scenario import assert_three_rules, node_routes_wanted, routes_of, run_verify
from lib.netns_backend import lab_hosts

STANDIN = Path(__file__).resolve().parents[1] / "inventory" / "gce-standin"


def _api_routes():
    endpoint = (STANDIN / "endpoint").read_text().strip().rstrip("/")
    request = urllib.request.Request(endpoint + "/projects/podnet-lab/global/routes",
                                     headers={"Authorization": "Bearer podnet-test-token"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read().decode()).get("items", [])


def test_one_owned_route_per_pod_subnet_in_the_api_and_on_the_router(inventory, node_vars, state):
    routes = _api_routes()
    want = {(cidrs[0], name) for name, cidrs in state["nodes"].items()}
    got = {(r["destRange"], r["nextHopInstance"].rsplit("/", 1)[-1]) for r in routes}
    assert got == want
    assert all(r["name"].startswith("podnet-") and r["priority"] == 1000 for r in routes)
    assert routes_of(lab_hosts(str(inventory))["pngc-router"]) == node_routes_wanted(state, node_vars)


def test_nodes_hold_no_peer_routes_and_keep_the_vpc_unmasqueraded(nodes):
    for name, host in nodes.items():
        assert routes_of(host) == set(), name
        masq = host.check_output("iptables-save -t nat")
        assert "-A PODNET-MASQ -d 172.29.42.0/24" in masq and "-j MASQUERADE" in masq, name


def test_verify_playbook_passes(inventory, nodes):
    assert_three_rules(run_verify(inventory), len(nodes))
