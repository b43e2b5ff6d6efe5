# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Dual stack end to end: a lab with an IPv6 underlay, site with IPv4 /26 and IPv6 /64 blocks, verify."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest
import yaml

from lib.labtools import BIN, new_lab, recap, run
from lib.netns_backend import lab_hosts

PREFIX = "pds"
CLUSTERS = ["10.32.0.0/20", "fd00:32::/56"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request):
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("ds") / "lab", request, count=3,
                   lab_vars={"podnet_lab_subnet": "172.27.3.0/24",
                             "podnet_lab_subnet_ipv6": "fd00:27:3::/64",
                             "podnet_lab_external_cidr": "198.18.7.0/24",
                             "podnet_lab_external_cidr_ipv6": "fd00:198:7::/64",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": CLUSTERS,
                                                           "podnet_node_prefix_ipv4": 26}})
    spec.playbook("present")
    return spec


def test_dual_stack_site_and_verify(lab):
    site = run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(lab.hosts_yml)])
    assert all(r["failed"] == 0 for r in recap(site.stdout).values())
    state = yaml.safe_load((lab.inventory_dir / ".podnet_state.yml").read_text())
    hosts = lab_hosts(str(lab.hosts_yml))
    for i, node in enumerate(lab.nodes):
        v4, v6 = (ipaddress.ip_network(c) for c in state["nodes"][node])
        assert v4.prefixlen == 26 and v4.subnet_of(ipaddress.ip_network(CLUSTERS[0]))
        assert v6.prefixlen == 64 and v6.subnet_of(ipaddress.ip_network(CLUSTERS[1]))
        addrs = {(a["local"], a["prefixlen"]) for a in
                 json.loads(hosts[node].check_output("ip -json addr show cbr0"))[0]["addr_info"]
                 if a.get("scope") == "global"}
        assert addrs == {(str(v4[1]), 26), (str(v6[1]), 64)}
        assert hosts[node].file("/proc/sys/net/ipv6/conf/all/forwarding").content_string.strip() == "1"
        six = {r["dst"] for r in json.loads(hosts[node].check_output("ip -6 -json route show proto 158"))}
        assert six == {state["nodes"][peer][1] for peer in lab.nodes if peer != node}
        assert "PODNET-MASQ" in hosts[node].check_output("ip6tables-save -t nat")
    verify = run([str(BIN / "ansible-playbook"), "podnet.cluster.verify", "-i", str(lab.hosts_yml)])
    out = verify.stdout
    for family in ("IPv4", "IPv6"):
        for check in ("pod -> pod", "node -> pod", "pod -> node"):
            assert "%s (%s): 9 of 9 ok" % (check, family) in out, out[-6000:]
    assert "pod -> external (IPv4 198.18.7.10 port 47300): 3 of 3 ok" in out
    assert "pod -> external (IPv6 fd00:198:7::10 port 47300): 3 of 3 ok" in out
