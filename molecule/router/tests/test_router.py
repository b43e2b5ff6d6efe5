# SPDX-License-Identifier: Apache-2.0
"""The router fabric on this scenario's lab (the tests of the fabric live in tests/lib/molecule_router_tests.py).

One dual-stack lab with both runtimes: the router's routes, the nodes' lack of peer routes and verify's three
rules are checked in both families, and :func:`test_both_families_and_both_runtimes_on_every_node` shows the lab
is that case."""

from __future__ import annotations

import ipaddress
import json

# collected by pytest from here
from lib.molecule_router_tests import (  # noqa: F401 pylint: disable=unused-import
    test_nodes_hold_no_peer_routes_and_forward,
    test_the_router_routes_every_pod_subnet_via_its_node,
    test_verify_playbook_passes,
)


def test_both_families_and_both_runtimes_on_every_node(nodes, node_vars, state):
    for name, host in nodes.items():
        ips = node_vars[name]["podnet_node_ip"]
        assert sorted(ipaddress.ip_interface(i).version for i in ips) == [4, 6], (name, ips)
        blocks = {ipaddress.ip_network(c).version: ipaddress.ip_network(c) for c in state["nodes"][name]}
        assert sorted((v, b.prefixlen) for v, b in blocks.items()) == [(4, 25), (6, 64)], (name, blocks)
        # Docker on the IPv4 block's upper half (IPv4 only), CNI on the rest of it and on the IPv6 block
        daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
        docker_half = ipaddress.ip_network(daemon["fixed-cidr"])
        assert docker_half.subnet_of(blocks[4]) and daemon["bridge"] == "cbr0", (name, daemon)
        assert not {"ipv6", "fixed-cidr-v6"} & set(daemon), (name, daemon)
        conflist = json.loads(host.file("/etc/cni/net.d/10-podnet.conflist").content_string)
        ranges = {ipaddress.ip_network(r["subnet"]).version: r
                  for rs in conflist["plugins"][0]["ipam"]["ranges"] for r in rs}
        assert {v: r["subnet"] for v, r in ranges.items()} == {v: str(b) for v, b in blocks.items()}, (name, ranges)
        assert ipaddress.ip_address(ranges[4]["rangeEnd"]) < docker_half.network_address, (name, ranges[4])
