# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The ONE place that says how the overlay benchmark (every peer's VXLAN entries in one call) calls the overlay reconcile.

bench/bench.py gives ``overlay_invocation`` the peers as (block, node IP, name) tuples and runs the returned task
in a play whose vars are the returned vars, inside a scratch network namespace whose eth0 holds ON_LINK_ADDRESS.
Each peer costs three kernel entries (a permanent neighbour, an FDB entry, a route). Between rounds ``FLUSH``
(run inside that namespace) deletes the device, which takes its entries with it.

Today: podnet.cluster.overlay, the same engine part node_state runs, with the peers as one string of lines
("BLOCK via VTEP mac MAC dst NODE_IP peer NAME"), the form the node document carries.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Sequence, Tuple

PROTOCOL = 158
DEVICE = "podnet.vx4"
ON_LINK_ADDRESS = "10.0.0.1/16"
VNI = 1
FLUSH: List[str] = ["ip", "link", "delete", DEVICE]


def mac_of(index: int) -> str:
    """A locally administered unicast MAC per peer (the collection derives it from cluster and node)."""
    return "0a:%02x:%02x:%02x:%02x:%02x" % tuple((index >> s) & 0xFF for s in (32, 24, 16, 8, 0))


def peer_lines(peers: Sequence[Tuple[str, str, str]]) -> List[str]:
    return ["%s via %s mac %s dst %s peer %s" % (block, ipaddress.ip_network(block).network_address, mac_of(i + 1),
                                                 via, name) for i, (block, via, name) in enumerate(peers)]


def overlay_invocation(peers: Sequence[Tuple[str, str, str]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(task, play vars) that make the node's overlay exactly ``peers``."""
    node_ip = ON_LINK_ADDRESS.split("/", maxsplit=1)[0]
    task = {
        "name": "Reconcile the node's overlay",
        "podnet.cluster.overlay": {
            "vni": VNI,
            "devices": [{"name": DEVICE, "family": 4, "local": node_ip, "mac": mac_of(0),
                         "addresses": ["10.127.255.0/32"]}],
            "peers": "{{ bench_peers }}",
            "node": "bench",
            "protocol": PROTOCOL,
        },
    }
    return task, {"bench_peers": "\n".join(peer_lines(peers))}
