# SPDX-License-Identifier: Apache-2.0
"""The l2_bridge fabric on this scenario's lab, reached over SSH: uplinks in the bridge, one on-link cluster
network, no routes, each node handing out only its own block; verify passes."""

from __future__ import annotations

import ipaddress
import json

import yaml

from lib.molecule_scenario import assert_three_rules, routes_of, run_verify


def test_the_nodes_are_reached_over_ssh(inventory):
    lab = yaml.safe_load(inventory.read_text())["all"]["children"]["podnet_lab"]
    hosts = lab["children"]["podnet_nodes"]["hosts"]
    assert hosts and all(h["ansible_connection"] == "ssh" for h in hosts.values())


def test_every_uplink_is_a_port_of_the_bridge_which_holds_the_node_ip(nodes, node_vars, state):
    for name, host in nodes.items():
        links = {l["ifname"]: l for l in json.loads(host.check_output("ip -json link show"))}
        assert links["eth0"].get("master") == "cbr0", name
        assert links["cbr0"]["address"] == links["eth0"]["address"], name
        addrs = json.loads(host.check_output("ip -json addr show dev cbr0"))[0]["addr_info"]
        held = {"%s/%s" % (a["local"], a["prefixlen"]) for a in addrs if a.get("scope") == "global"}
        block = ipaddress.ip_network(state["nodes"][name][0])
        cluster = ipaddress.ip_network(json.loads(host.file("/etc/podnet/node.json").content_string)
                                       ["document"]["owned_cidrs"][0])
        ips = node_vars[name]["podnet_node_ip"]
        assert held == set(ips if isinstance(ips, list) else [ips]) | {"%s/%d" % (block.network_address + 1,
                                                                                  cluster.prefixlen)}, name
        assert "default via" in host.check_output("ip route show dev cbr0"), name
        uplink = json.loads(host.check_output("ip -json addr show dev eth0"))[0]["addr_info"]
        assert all(a.get("scope") == "link" for a in uplink), (name, uplink)
        assert host.file("/etc/podnet/uplink-cbr0.json").exists, name


def test_no_routes_and_each_node_hands_out_only_its_block(nodes, state):
    for name, host in nodes.items():
        assert routes_of(host) == set(), name
        assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1", name
        block = ipaddress.ip_network(state["nodes"][name][0])
        record = json.loads(host.file("/etc/podnet/node.json").content_string)
        assert record["document"]["fabric"] == "l2_bridge"
        conflist = json.loads(host.file("/etc/cni/net.d/10-podnet.conflist").content_string)
        (rng,) = conflist["plugins"][0]["ipam"]["ranges"][0]
        low, high = block.subnets()
        assert rng == {"subnet": record["document"]["owned_cidrs"][0], "rangeStart": str(block.network_address + 2),
                       "rangeEnd": str(low.broadcast_address), "gateway": str(block.network_address + 1)}
        daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
        assert daemon["fixed-cidr"] == str(high) and daemon["bridge"] == "cbr0"


def test_verify_playbook_passes(inventory, nodes):
    assert_three_rules(run_verify(inventory), len(nodes), (4,))
