# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Fabric l2_bridge end to end, over real SSH: podnet.cluster.site moves every node's uplink into the bridge.

A dual-stack lab of three named nodes served over SSH (``podnet_lab_ssh``), built unlike the defaults
(172.28.77.0/24, cluster 10.88.0.0/17 and fd00:88::/56, /25 blocks, both runtimes). Every playbook runs from
this machine's namespace through the lab's ProxyCommand, as molecule and users run it. In order (each test starts
where the one before ended, and sets itself up when run alone):

1. the converge: an SSH session and a TCP stream to a node's underlay address, both held open through it,
   survive with no data lost; a second run and ``--check`` change nothing; verify passes (both families);
2. a reboot: the node back to its underlay, the boot unit's command moves the uplink again;
3. a transition to l2_routes and back (the uplink is put back first; then moved again);
4. teardown: every node exactly as before the first converge;
5. a check that cannot pass (a gateway that does not answer after the move): every node rolled back, with its
   old addresses and routes, and reachable over SSH;
6. two nodes that are not as the others, in one round: an uplink address with a finite lifetime on one, an IPv6
   default route from router advertisements on another;
7. pods came and went on a fresh bridge: teardown (of one node) and a switch to l2_routes (of the others) both
   succeed, and verify passes after leaving l2_bridge.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from lib import rootns
from lib.labtools import BIN, Lab, in_ns, new_lab, recap, run
from lib.netns_backend import lab_hosts
from lib.nodestate import assert_same, node_state, playbook, pristine_states, record_path, torn_down, unchanged
from lib.uplinklab import TcpStream, link

PREFIX = "pl2"
SUBNET, SUBNET6 = "172.28.77.0/24", "fd00:28:77::/64"
GATEWAY, GATEWAY6 = "172.28.77.1", "fd00:28:77::1"
CLUSTERS = ["10.88.0.0/17", "fd00:88::/56"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("l2b") / "lab", request, node_names=["east", "west", "north"],
                   lab_vars={"podnet_lab_subnet": SUBNET, "podnet_lab_subnet_ipv6": SUBNET6,
                             "podnet_lab_external_cidr": "198.18.77.0/24", "podnet_lab_ssh": True,
                             "podnet_lab_inventory_vars": {"podnet_fabric": "l2_bridge",
                                                           "podnet_cluster_cidrs": CLUSTERS,
                                                           "podnet_node_prefix_ipv4": 25,
                                                           "podnet_runtimes": ["docker", "cni"]}})
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "delete", "%s-ctl" % spec.name],
                                                stderr=subprocess.DEVNULL, check=False))
    spec.rootns_before = rootns.snapshot()
    spec.build()
    return spec


@pytest.fixture(scope="module")
def pristine(lab: Lab) -> Dict[str, Dict[str, str]]:
    """Every node as the lab built it, once its IPv6 addresses settled."""
    return pristine_states(lab)


def node_ip(lab: Lab, node: str) -> str:
    return "172.28.77.%d" % (11 + lab.nodes.index(node))


def on_l2_bridge(lab: Lab) -> None:
    """A converge only where a node's uplink is not in its bridge (with the node's record): the tests before
    leave the lab so (run alone, a test converges here)."""
    if not all(link(n, "eth0").get("master") == "cbr0" and record_path(lab, n).exists() for n in lab.nodes):
        playbook(lab, "site")


def underlay(ns: str) -> Dict[str, List[str]]:
    """The global addresses and the routes of a namespace, by device, in ip's words: neither the kernel's nor
    podnet.cluster's (protocol 158) routes."""
    out: Dict[str, List[str]] = {}
    for entry in json.loads(in_ns(ns, "ip", "-json", "addr", "show").stdout):
        for addr in entry["addr_info"]:
            if addr.get("scope") == "global":
                out.setdefault(entry["ifname"], []).append("%s/%s" % (addr["local"], addr["prefixlen"]))
    for family in ("-4", "-6"):
        for route in json.loads(in_ns(ns, "ip", "-json", family, "route", "show").stdout):
            if str(route.get("protocol")) not in ("kernel", "158"):
                out.setdefault(route.get("dev"), []).append("%s via %s" % (route["dst"], route.get("gateway")))
    return {k: sorted(v) for k, v in out.items()}


class SshTicker:
    """An interactive SSH session from the lab's controller namespace that prints a counter every 50 ms."""

    def __init__(self, lab: Lab, address: str):
        key = "%s/ssh/id_ed25519" % lab.root
        self.proc = subprocess.Popen(
            ["nsenter", "--net=/run/netns/%s-ctl" % lab.name, "--", "ssh", "-i", key, "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=1",
             "root@%s" % address, "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)
        lab.pids.append(self.proc.pid)
        self.lines: List[int] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(int(line))

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        assert len(self.lines) >= count, "the SSH session stopped at %d lines (rc %s)" % (len(self.lines),
                                                                                          self.proc.poll())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_converge_over_ssh_keeps_sessions_and_streams(lab: Lab, pristine, tmp_path):
    east, west = lab.nodes[0], lab.nodes[1]
    stream = TcpStream(east, "%s-router" % lab.name, node_ip(lab, east), 7100, tmp_path, lab.pids).start()
    ticker = SshTicker(lab, node_ip(lab, west))
    try:
        stream.wait_for(200)
        ticker.wait_for(10)
        proc = playbook(lab, "site")
        assert "Apply | move the uplink into the bridge (podnet_fabric l2_bridge)" in proc.stdout
        before_end = stream.received(), len(ticker.lines)
        stream.wait_for(before_end[0] + 300)     # the same TCP connection carries data after the move
        ticker.wait_for(before_end[1] + 10)      # and so does the SSH session
        assert ticker.proc.poll() is None
    finally:
        outcome = stream.finish()
        ticker.stop()
    assert outcome["error"] is None, outcome
    assert outcome["in_order"] and outcome["received"] == outcome["sent"] > before_end[0] + 300, outcome
    assert ticker.lines == list(range(len(ticker.lines)))
    assert all(c["changed"] > 0 and c["failed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]

    state = yaml.safe_load((lab.inventory_dir / ".podnet_state.yml").read_text())
    for node in lab.nodes:
        assert link(node, "eth0").get("master") == "cbr0"
        assert link(node, "cbr0")["address"] == link(node, "eth0")["address"]
        v4, v6 = (ipaddress.ip_network(c) for c in state["nodes"][node])
        assert underlay(node)["cbr0"] == sorted([
            "%s/17" % (v4.network_address + 1), "%s/56" % (v6.network_address + 1), "%s/24" % node_ip(lab, node),
            "fd00:28:77::%d/64" % (11 + lab.nodes.index(node)), "default via %s" % GATEWAY,
            "default via %s" % GATEWAY6])
        assert "eth0" not in underlay(node)
        assert in_ns(node, "ip", "route", "show", "proto", "158").stdout == ""
    # the conflist: the cluster network on-link, this node's lower half of its block to hand out
    hosts = lab_hosts(str(lab.hosts_yml))
    conflist = json.loads(hosts[east].file("/etc/cni/net.d/10-podnet.conflist").content_string)
    v4 = ipaddress.ip_network(state["nodes"][east][0])
    assert conflist["plugins"][0]["ipam"]["ranges"][0] == [{
        "subnet": CLUSTERS[0], "rangeStart": str(v4.network_address + 2),
        "rangeEnd": str(v4.network_address + v4.num_addresses // 2 - 1), "gateway": str(v4.network_address + 1)}]
    daemon = json.loads(hosts[east].file("/etc/docker/daemon.json").content_string)
    assert daemon["fixed-cidr"] == str(list(v4.subnets())[1])

    again = playbook(lab, "site")
    assert unchanged(again), again.stdout[-3000:]
    # --check --diff changes nothing either: asserted by the next test, on the same state (its restore brings east
    # back exactly as converged, the other nodes are untouched)
    verify = playbook(lab, "verify")
    for family in (4, 6):
        for rule in ("pod -> pod", "node -> pod", "pod -> node"):
            assert "%s (IPv%d): 9 of 9 ok" % (rule, family) in verify.stdout, verify.stdout[-5000:]


def test_reboot_moves_the_uplink_again(lab: Lab):
    east = lab.nodes[0]
    hosts = lab_hosts(str(lab.hosts_yml))
    on_l2_bridge(lab)
    converged = node_state(lab, east)
    # The node as it boots: its network configuration puts the underlay on eth0; nothing of podnet.cluster.
    hosts[east].check_output(
        "ip link del cbr0 && ip addr add %s/24 dev eth0 && ip -6 addr add fd00:28:77::11/64 dev eth0 nodad && "
        "ip route add default via %s && ip -6 route add default via %s && "
        "sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0" % (node_ip(lab, east), GATEWAY, GATEWAY6))
    unit = Path(lab.node_root(east), "upper/etc/systemd/system/podnet-cluster.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    restored = hosts[east].run(exec_start)
    assert restored.rc == 0, restored.stdout + restored.stderr
    assert "changed bridge cbr0" in restored.stdout and "changed uplink eth0" in restored.stdout, restored.stdout
    assert link(east, "eth0").get("master") == "cbr0"
    assert_same(converged, node_state(lab, east), "the boot restore did not bring the node back")
    again = hosts[east].run(exec_start)
    assert again.rc == 0 and "nothing to do" in again.stdout, again.stdout
    # also the converge test's --check --diff: every node as that converge left it
    check = playbook(lab, "site", "--check", "--diff")
    assert unchanged(check), "a converge after the restore (or after the converge) would change something:\n%s" \
        % check.stdout[-3000:]


def test_transition_to_l2_routes_puts_the_uplink_back_and_back_again(lab: Lab):
    """Verify after leaving l2_bridge: test_leaving_l2_bridge_after_pods_came_and_went_on_the_bridge (its switch to
    l2_routes is the same move back, from a bridge that ran pods)."""
    on_l2_bridge(lab)
    proc = playbook(lab, "site", podnet_fabric="l2_routes")
    assert "Apply | put the uplink back from the bridge (leaving podnet_fabric l2_bridge)" in proc.stdout
    for node in lab.nodes:
        assert link(node, "eth0").get("master") is None
        assert underlay(node)["eth0"] == sorted([
            "%s/24" % node_ip(lab, node), "fd00:28:77::%d/64" % (11 + lab.nodes.index(node)),
            "default via %s" % GATEWAY, "default via %s" % GATEWAY6])
        assert all(a.endswith(("/25", "/64")) for a in underlay(node)["cbr0"])
        assert len(in_ns(node, "ip", "route", "show", "proto", "158").stdout.splitlines()) == 2
        assert not Path(lab.node_root(node), "upper/etc/podnet/uplink-cbr0.json").exists()
    playbook(lab, "site")
    assert all(link(n, "eth0").get("master") == "cbr0" for n in lab.nodes)
    assert unchanged(playbook(lab, "site", "--check"))


def test_teardown_returns_every_node_to_its_state_before(lab: Lab, pristine):
    playbook(lab, "teardown")
    for node in lab.nodes:
        assert_same(pristine[node], node_state(lab, node), "teardown left %s different" % node)
    assert unchanged(playbook(lab, "teardown"))


def test_a_move_whose_check_fails_is_rolled_back_everywhere(lab: Lab, pristine):
    torn_down(lab, pristine)
    before = {n: underlay(n) for n in lab.nodes}
    proc = playbook(lab, "site", check=False, podnet_l2_bridge_check_address=["172.28.77.99"],
                    podnet_l2_bridge_check_timeout=2, podnet_l2_bridge_rollback_timeout=15)
    assert proc.returncode != 0
    assert proc.stdout.count("move of eth0 into cbr0 rolled back: reachability check failed: 172.28.77.99 did "
                             "not answer") >= 1, proc.stdout[-4000:]
    for node in lab.nodes:
        assert link(node, "eth0").get("master") is None
        assert underlay(node)["eth0"] == before[node]["eth0"]
    # reachable over a new SSH connection, from this machine's namespace through the lab's ProxyCommand
    ping = run([str(BIN / "ansible"), "-i", str(lab.hosts_yml), "podnet_nodes", "-m", "ansible.builtin.ping"])
    assert ping.returncode == 0 and ping.stdout.count("SUCCESS") == len(lab.nodes), ping.stdout
    playbook(lab, "teardown")
    for node in lab.nodes:
        assert_same(pristine[node], node_state(lab, node), "teardown after the rollback left %s different" % node)
    assert rootns.diff(lab.rootns_before, rootns.snapshot()) == ""


def test_an_uplink_address_with_a_finite_lifetime_and_a_default_route_from_router_advertisements(lab: Lab, pristine):
    """Two nodes unlike the others, in one round (each case named in its assertions):

    * east, "dynamic address": a DHCP-style address (finite lifetime) on its uplink: the preflight refuses the move
      before any node changes, naming the host and podnet_l2_bridge_allow_dynamic_address; with it, the node moves.
    * west, "RA default route": IPv6 forwarding needs accept_ra=2 where the RA-learned default route is: on the
      uplink before the move, on the bridge after it. Both get it at once, so the second run changes nothing;
      teardown puts both back. (fe80::1 is no router here: the check asks the IPv4 gateway only.)
    """
    east, west = lab.nodes[0], lab.nodes[1]
    hosts = lab_hosts(str(lab.hosts_yml))
    torn_down(lab, pristine)
    address = "%s/24" % node_ip(lab, east)
    in_ns(east, "ip", "addr", "change", address, "dev", "eth0", "valid_lft", "3600", "preferred_lft", "3600")
    hosts[west].check_output("ip -6 route add default via fe80::1 dev eth0 proto ra metric 2048")
    try:
        accept_ra = hosts[west].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip()
        before = {n: node_state(lab, n) for n in lab.nodes}
        held = in_ns(east, "ip", "-o", "addr", "show", "dev", "eth0").stdout
        assert "valid_lft 3" in held, held
        proc = playbook(lab, "site", check=False, podnet_l2_bridge_check_address=[GATEWAY])
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, "dynamic address: not refused\n%s" % out[-8000:]
        assert east in out and "podnet_l2_bridge_allow_dynamic_address" in out and address in out, \
            "dynamic address: the refusal does not say it\n%s" % out[-4000:]
        for n in lab.nodes:
            assert link(n, "eth0").get("master") is None, "dynamic address: %s moved" % n
            changed = {k: v for k, v in node_state(lab, n).items() if "valid_lft" not in v}
            assert_same({k: v for k, v in before[n].items() if k in changed}, changed,
                        "dynamic address: a refused dynamic address changed %s" % n)

        settings = {"podnet_l2_bridge_check_address": [GATEWAY], "podnet_l2_bridge_allow_dynamic_address": True}
        playbook(lab, "site", **settings)
        assert all(link(n, "eth0").get("master") == "cbr0" for n in lab.nodes), \
            "dynamic address: not moved with podnet_l2_bridge_allow_dynamic_address"
        assert "default via fe80::1 dev cbr0 proto ra metric 2048" in hosts[west].check_output("ip -6 route"), \
            "RA default route: not moved to the bridge"
        for dev in ("eth0", "cbr0"):
            assert hosts[west].file("/proc/sys/net/ipv6/conf/%s/accept_ra" % dev).content_string.strip() == "2", \
                "RA default route: accept_ra of %s" % dev
        assert unchanged(playbook(lab, "site", **settings)), "RA default route: a second run changed something"
        down = playbook(lab, "teardown")
        assert all(link(n, "eth0").get("master") is None for n in lab.nodes), \
            "dynamic address: teardown left an uplink in the bridge\n%s" % down.stdout[-6000:]
        assert all(not record_path(lab, n).exists() for n in lab.nodes), \
            "dynamic address: teardown left a record\n%s" % down.stdout[-6000:]
        assert "default via fe80::1 dev eth0 proto ra metric 2048" in hosts[west].check_output("ip -6 route"), \
            "RA default route: not put back on the uplink"
        assert hosts[west].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() == accept_ra, \
            "RA default route: accept_ra not put back"
    finally:
        in_ns(east, "ip", "addr", "change", address, "dev", "eth0", "valid_lft", "forever", "preferred_lft", "forever")
        hosts[west].run("ip -6 route del default via fe80::1 proto ra metric 2048")
    for node in lab.nodes:
        assert_same(pristine[node], node_state(lab, node), "the dynamic-address and RA cases left %s different" % node)


def snapshot_mac(lab: Lab, node: str) -> str:
    saved = json.loads(Path(lab.node_root(node), "upper/etc/podnet/uplink-cbr0.json").read_text())
    return saved["links"]["cbr0"]["address"]


def test_leaving_l2_bridge_after_pods_came_and_went_on_the_bridge(lab: Lab, pristine):
    """The uplink snapshot of a node that ran pods holds cbr0's all-zero MAC; putting the uplink back never sets
    it (the kernel refuses it): teardown, and a switch to l2_routes, both succeed, checked first by the preflight.
    Both from one such state: teardown of east alone (--limit), then the switch of west and north (east converges
    l2_routes afresh beside them); verify after leaving l2_bridge."""
    east = lab.nodes[0]
    torn_down(lab, pristine)
    # A fresh cbr0 (l2_routes, from torn-down nodes), then verify: its probe pods (CNI bridge plugin, ADD then DEL)
    # attach to cbr0 and leave it. The kernel then shows the port-less bridge's MAC (its own, random one) as all
    # zeros: the condition of a node that ran pods.
    playbook(lab, "site", podnet_fabric="l2_routes")
    verify = playbook(lab, "verify", podnet_fabric="l2_routes")
    assert "pod -> pod (IPv4): 9 of 9 ok" in verify.stdout, verify.stdout[-5000:]
    for node in lab.nodes:
        assert link(node, "cbr0")["address"] == "00:00:00:00:00:00", link(node, "cbr0")
        assert in_ns(node, "ip", "-o", "link", "show", "master", "cbr0").stdout.strip() == ""
    playbook(lab, "site")
    for node in lab.nodes:
        assert link(node, "eth0").get("master") == "cbr0"
        saved = json.loads(Path(lab.node_root(node), "upper/etc/podnet/uplink-cbr0.json").read_text())
        assert saved["links"]["cbr0"]["address"] == "00:00:00:00:00:00"
        assert saved["links"]["cbr0"]["addr_assign_type"] == 1      # the kernel's choice (random)

    # teardown: checked on every node; then east torn down
    check = playbook(lab, "teardown", "--check")
    assert "Cannot assign" not in check.stdout
    playbook(lab, "teardown", "--limit", east)
    assert_same(pristine[east], node_state(lab, east), "teardown after pods came and went left %s different" % east)

    # the switch to l2_routes: west and north leave l2_bridge
    assert all(snapshot_mac(lab, n) == "00:00:00:00:00:00" for n in lab.nodes[1:])
    check = playbook(lab, "site", "--check", podnet_fabric="l2_routes")
    assert "Cannot assign" not in check.stdout
    proc = playbook(lab, "site", podnet_fabric="l2_routes")
    assert "Apply | put the uplink back from the bridge (leaving podnet_fabric l2_bridge)" in proc.stdout
    for node in lab.nodes:
        assert link(node, "eth0").get("master") is None
        assert underlay(node)["eth0"] == sorted([
            "%s/24" % node_ip(lab, node), "fd00:28:77::%d/64" % (11 + lab.nodes.index(node)),
            "default via %s" % GATEWAY, "default via %s" % GATEWAY6])
        assert not Path(lab.node_root(node), "upper/etc/podnet/uplink-cbr0.json").exists()
    verify = playbook(lab, "verify", podnet_fabric="l2_routes")
    assert "pod -> pod (IPv4): 9 of 9 ok" in verify.stdout, "verify after leaving l2_bridge\n%s" % verify.stdout[-5000:]
    playbook(lab, "teardown")
    for node in lab.nodes:
        assert_same(pristine[node], node_state(lab, node), "leaving l2_bridge left %s different" % node)
