# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The ONE place that says how the routes benchmark (5,000 peer routes at the cost of an empty module) calls the route reconcile.

bench/bench.py gives ``routes_invocation`` the peer routes a node must have, as (dst, via, peer) tuples, and
runs the returned task in a play whose vars are the returned vars, inside a scratch network namespace whose
eth0 holds ON_LINK_ADDRESS (every ``via`` is inside that network, so every peer is on-link). Between runs
it removes the routes with ``FLUSH`` (run inside that namespace), so that the next run adds them all again.

Today: podnet.cluster.routes with its compact route form, one "DST via GW peer NAME" line per route (the
form the node document carries), all in one string: templating a list of 5,000 strings costs 5,000 template
calls on the controller, one string costs one. To benchmark another invocation, change only this file.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

# Route protocol that marks the collection's routes (podnet_route_protocol).
PROTOCOL = 158

# Address of the benchmark node on its eth0; the peers' addresses (via) are taken from this network.
ON_LINK_ADDRESS = "10.0.0.1/16"

# Removes every route the invocation added (run inside the scratch namespace).
FLUSH: List[str] = ["ip", "route", "flush", "proto", str(PROTOCOL)]


def routes_invocation(routes: Sequence[Tuple[str, str, str]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(task, play vars) that make the node's own routes exactly ``routes``.

    The routes travel as a play variable and reach the module through templating, so the measured cost includes
    moving them through Ansible.
    """
    task = {
        "name": "Reconcile the node's peer routes",
        "podnet.cluster.routes": {
            "routes": "{{ bench_routes }}",
            "node": "bench",
            "protocol": PROTOCOL,
        },
    }
    play_vars = {"bench_routes": "\n".join("%s via %s peer %s" % (dst, via, peer) for dst, via, peer in routes)}
    return task, play_vars
