# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""podnet.cluster.site on a lab built differently from the defaults (other CIDRs, /25 blocks, CNI only).

Reconcile as nodes come and go, check mode telling the truth, foreign objects left alone, and
preflight failures that stop every node before any change.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from lib.labtools import BIN, Lab, new_lab, recap, run
from lib.netns_backend import lab_hosts

PREFIX = "pst"
CLUSTER = "10.200.0.0/16"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("site") / "lab", request, node_names=["a1", "b2", "c3"],
                   lab_vars={"podnet_lab_subnet": "172.28.5.0/24",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": [CLUSTER],
                                                           "podnet_node_prefix_ipv4": 25,
                                                           "podnet_runtimes": ["cni"]}})
    spec.build()
    return spec


def inventory(lab: Lab, tmp_path: Path, nodes, host_vars=None) -> Path:
    """The lab's inventory restricted to ``nodes``, with one state file for the whole module."""
    data = yaml.safe_load(lab.hosts_yml.read_text())
    group = data["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]
    group["hosts"] = {n: dict(v, **(host_vars or {}).get(n, {})) for n, v in group["hosts"].items() if n in nodes}
    group["vars"]["podnet_state_file"] = str(lab.inventory_dir / "state.yml")
    path = tmp_path / ("inv-%s.yml" % "-".join(n.rsplit("-", 1)[1] for n in nodes))
    path.write_text(yaml.safe_dump(data))
    return path


def site(inv: Path, *args, check=True):
    return run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(inv), *args], check=check)


def routes(host):
    return {(r["dst"], r["gateway"]) for r in json.loads(host.check_output("ip -json route show proto 158"))}


def state_of(lab):
    return yaml.safe_load((lab.inventory_dir / "state.yml").read_text())


def test_reconcile_as_nodes_come_and_go(lab: Lab, tmp_path):
    hosts = lab_hosts(str(lab.hosts_yml))
    n1, n2, n3 = lab.nodes
    # A route the collection does not own, on node 1: it must survive every run.
    hosts[n1].check_output("ip route add 192.168.77.0/24 via 172.28.5.1 proto static")

    first = site(inventory(lab, tmp_path, [n1, n2]))
    assert recap(first.stdout)[n1]["changed"] > 0
    blocks = state_of(lab)["nodes"]
    assert blocks == {n1: ["10.200.0.0/25"], n2: ["10.200.0.128/25"]}
    assert routes(hosts[n1]) == {("10.200.0.128/25", "172.28.5.12")}
    conflist = json.loads(hosts[n1].file("/etc/cni/net.d/10-podnet.conflist").content_string)
    assert conflist["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.200.0.0/25", "gateway": "10.200.0.1"}]]
    assert not hosts[n1].file("/etc/docker/daemon.json").exists

    # A run that changes nothing asks each node one thing: its preflight (a check) proves the apply has nothing to
    # do, so the node is not asked again (-vvv: the connection logs every command it runs on a node)
    again = site(inventory(lab, tmp_path, [n1, n2]), "-vvv")
    assert all(c["changed"] == 0 for c in recap(again.stdout).values()), again.stdout[-3000:]
    commands = re.findall(r"^<([^>]+)> EXEC ", again.stdout, re.M)
    assert sorted(commands) == [n1, n2], commands

    # Node 3 joins: check mode reports the change and changes nothing.
    full = inventory(lab, tmp_path, [n1, n2, n3])
    check = site(full, "--check", "--diff")
    # The node task itself (not the plan's state file on the run_once host) reports n2's change, and its
    # diff shows the new route to n3's block: n2 is not the host the plan ran on.
    node_task = check.stdout.split("Pod network of this node", 1)[1].split("\nTASK ", 1)[0]
    assert re.search(r"^changed: \[%s\]" % re.escape(n2), node_task, re.M), node_task[-3000:]
    assert re.search(r"^\+10\.200\.1\.0/25 via 172\.28\.5\.13 dev eth0$", node_task, re.M), node_task[-3000:]
    assert routes(hosts[n1]) == {("10.200.0.128/25", "172.28.5.12")}
    assert n3 not in state_of(lab)["nodes"]
    assert hosts[n3].run("ip link show cbr0").rc != 0

    site(full)
    assert state_of(lab)["nodes"][n3] == ["10.200.1.0/25"]
    assert routes(hosts[n1]) == {("10.200.0.128/25", "172.28.5.12"), ("10.200.1.0/25", "172.28.5.13")}

    # Node 2 leaves on purpose: its block is released, the stale routes to it are removed, the foreign route stays.
    site(inventory(lab, tmp_path, [n1, n3]), "-e", json.dumps({"podnet_release_nodes": [n2]}))
    assert state_of(lab)["released"] == ["10.200.0.128/25"]
    assert routes(hosts[n1]) == {("10.200.1.0/25", "172.28.5.13")}
    assert routes(hosts[n3]) == {("10.200.0.0/25", "172.28.5.11")}
    assert "192.168.77.0/24 via 172.28.5.1 dev eth0 proto static" in hosts[n1].check_output("ip route")


def test_preflight_failures_stop_every_node_before_any_change(lab: Lab, tmp_path):
    """Two refusals in one run, each on its own node, each asserted by name: node 3's node IP is not on-link
    from its peers (case "peer not on link", refused by nodes 1 and 2), and node 3's daemon.json holds a bip
    (case "docker bip", refused by node 3, which reaches its peers on-link)."""
    hosts = lab_hosts(str(lab.hosts_yml))
    n1, n2, n3 = lab.nodes
    original = '{\n  "bip": "172.17.0.1/16",\n  "log-level": "warn"\n}\n'
    # written on the node through the lab connection's own wrapper (as test_lifecycle does), not by an ad-hoc
    # Ansible run: the file is the same, and the assertion below reads it back unchanged after the refusal
    hosts[n3].check_output("mkdir -p /etc/docker && printf %s > /etc/docker/daemon.json", original)
    assert hosts[n3].file("/etc/docker/daemon.json").content_string == original
    try:
        before = {n: hosts[n].check_output("ip -json route; ip -json addr; iptables-save | grep -v '^#' || true")
                  for n in lab.nodes}
        # Node 3 also has an address on another network, and the inventory names it as the node IP:
        # its peers reach that address only through the router, so it is not L2-adjacent to them.
        hosts[n3].check_output("ip addr add 172.28.99.13/24 dev eth0")
        try:
            inv = inventory(lab, tmp_path, [n1, n2, n3], {n3: {"podnet_node_ip": "172.28.99.13/24"}})
            proc = site(inv, "-e", json.dumps({"podnet_runtimes": ["docker", "cni"]}), check=False)
        finally:
            hosts[n3].check_output("ip addr del 172.28.99.13/24 dev eth0")
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        # each node's own refusal: its "fatal: [node]: FAILED! =>" block (the indented lines under it)
        failed = dict(re.findall(r"^fatal: \[([^\]]+)\]: FAILED! =>[ \t]*((?:\n[ \t].*)*)", proc.stdout, re.M))
        # case "peer not on link": node 1 refuses node 3's node IP as a gateway
        assert n1 in failed and n3 in failed[n1] and "172.28.99.13" in failed[n1], "peer not on link:\n" + out[-5000:]
        assert "on-link" in failed[n1] and "podnet_fabric" in failed[n1], "peer not on link:\n" + out[-5000:]
        # case "docker bip": node 2 refuses its daemon.json
        assert n3 in failed and "bip" in failed[n3], "docker bip:\n" + out[-5000:]
        after = {n: hosts[n].check_output("ip -json route; ip -json addr; iptables-save | grep -v '^#' || true")
                 for n in lab.nodes}
        assert after == before, "a node changed before the refusals"
        assert hosts[n3].file("/etc/docker/daemon.json").content_string == original, "docker bip: daemon.json changed"
        assert not hosts[n1].file("/etc/docker/daemon.json").exists, "docker bip: node 1 got a daemon.json"
    finally:
        hosts[n3].check_output("rm -f /etc/docker/daemon.json")
