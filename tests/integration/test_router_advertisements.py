# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""What ordinary hosts do to the network must not break it: real router advertisements and an operator's FORWARD
policy of DROP, on a dual-stack lab whose nodes learn their IPv6 default route from the lab router's real
advertisements (ICMPv6 type 134, ``proto ra`` routes the kernel installs and purges by itself) and whose inventory
gives no podnet_node_ip (node IPs come from the nodes' facts, as on most real inventories).

The tests run in order on one lab: the first converge, a router outage, an operator's DROP, teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import pytest

from lib.labtools import Lab, advertise, in_ns, new_lab, ra_default_routes, ra_dir, wait_until
from lib.nodestate import assert_same, node_changes, node_state, playbook, unchanged

PREFIX = "pra"
CLUSTERS = ["10.58.0.0/18", "fd00:58::/48"]
SYSCTL_FILE = "/etc/sysctl.d/90-podnet-cluster.conf"
# Seconds between periodic advertisements: as long as real routers wait (so a purged route stays purged for the
# whole run), while solicitations and SIGHUP get an answer at once.
INTERVAL = 300

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("ra") / "lab", request, node_names=["amber", "birch", "cedar"],
                   lab_vars={"podnet_lab_subnet": "172.27.58.0/24",
                             "podnet_lab_subnet_ipv6": "fd00:27:58::/64",
                             "podnet_lab_external_cidr": "198.18.58.0/24",
                             "podnet_lab_external_cidr_ipv6": "fd00:198:58::/64",
                             "podnet_lab_router_advertisements": True,
                             "podnet_lab_ra_interval": INTERVAL,
                             "podnet_lab_node_ip": False,
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": CLUSTERS,
                                                           "podnet_node_prefix_ipv4": 27,
                                                           "podnet_node_prefix_ipv6": 80}})
    spec.playbook("present")
    return spec


def sysctl(node: str, key: str) -> str:
    return in_ns(node, "cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()


def all_routed(lab: Lab):
    return all(ra_default_routes(n) for n in lab.nodes)


def test_the_ra_default_route_survives_the_first_converge(lab: Lab):
    for node in lab.nodes:
        routes = ra_default_routes(node)
        assert routes and routes[0]["dev"] == "eth0" and routes[0]["gateway"].startswith("fe80:"), routes
        assert sysctl(node, "net.ipv6.conf.all.forwarding") == "0"
        assert sysctl(node, "net.ipv6.conf.eth0.accept_ra") == "1"
    gateways = {n: ra_default_routes(n)[0]["gateway"] for n in lab.nodes}
    # every route event of the nodes during the run: a purge and a later re-learning would look the same at the end
    monitors = {n: subprocess.Popen(["ip", "-n", n, "-6", "monitor", "route"], stdout=subprocess.PIPE, text=True)
                for n in lab.nodes}
    try:
        playbook(lab, "site")
    finally:
        for proc in monitors.values():
            os.kill(proc.pid, signal.SIGTERM)
    events = {n: proc.communicate(timeout=10)[0] for n, proc in monitors.items()}
    for node in lab.nodes:
        deleted = [line for line in events[node].splitlines() if line.startswith("Deleted default")]
        assert deleted == [], "%s lost its RA default route during the converge: %s" % (node, deleted)
        routes = ra_default_routes(node)
        assert [r["gateway"] for r in routes] == [gateways[node]], routes
        assert sysctl(node, "net.ipv6.conf.all.forwarding") == "1"
        assert sysctl(node, "net.ipv6.conf.eth0.accept_ra") == "2"
        lines = [line for line in in_ns(node, "cat", "%s/%s/upper%s" % (lab.root, node, SYSCTL_FILE)).stdout
                 .splitlines() if "=" in line]
        # the boot order is the file's order: accept_ra before forwarding
        assert lines[0] == "net/ipv6/conf/eth0/accept_ra = 2", lines
        assert lines[-1] == "net.ipv6.conf.all.forwarding = 1", lines
    assert unchanged(playbook(lab, "site", "--check"))


@pytest.mark.parametrize("given", [False, True], ids=["node-ip-from-facts", "node-ip-given"])
def test_a_router_outage_changes_nothing_and_the_router_is_heard_again(lab: Lab, given):
    """During an outage (the router's advertisement with router lifetime 0 took the default route away), a converge
    succeeds and changes nothing, the node IPs found in the facts or given by podnet_node_ip alike; accept_ra stays
    2, so the router's next advertisement is heard again although the node forwards."""
    converged = {n: node_state(lab, n) for n in lab.nodes}
    host_vars = lab.inventory_dir / "host_vars"
    if given:
        # the same addresses, given in the inventory (host_vars beside hosts.yml)
        host_vars.mkdir(exist_ok=True)
        for i, node in enumerate(lab.nodes):
            (host_vars / ("%s.yml" % node)).write_text(
                "podnet_node_ip: [172.27.58.%d/24, 'fd00:27:58::%d/64']\n" % (11 + i, 11 + i))
    advertise(lab, 0)
    try:
        wait_until(lambda: not any(ra_default_routes(n) for n in lab.nodes), 10,
                   "the nodes still hold the RA default route after an advertisement with router lifetime 0")
        check = playbook(lab, "site", "--check")
        assert unchanged(check), check.stdout[-4000:]
        run = playbook(lab, "site")
        assert unchanged(run), "a converge during the outage changed something:\n%s" % run.stdout[-4000:]
        for node in lab.nodes:
            assert sysctl(node, "net.ipv6.conf.eth0.accept_ra") == "2"
            assert_same(converged[node], node_state(lab, node), "the converge during the outage changed %s" % node)
    finally:
        advertise(lab, 1800)
        shutil.rmtree(host_vars, ignore_errors=True)
    wait_until(lambda: all_routed(lab), 10, "the nodes did not learn the default route again from the router's "
                                            "next advertisement (deaf to router advertisements)")
    for node in lab.nodes:
        assert ra_default_routes(node)[0]["dev"] == "eth0"


def test_an_operator_forward_policy_of_drop_is_kept(lab: Lab):
    """The FORWARD policy is the host's: a converge, --check and teardown leave the operator's DROP alone, and
    PODNET-FORWARD keeps pods on different nodes reaching each other under it."""
    hosts = {n: n for n in lab.nodes}
    for node in hosts:
        for tool in ("iptables", "ip6tables"):
            assert in_ns(node, tool, "-P", "FORWARD", "DROP").returncode == 0

    def policies():
        return {(n, tool): [line.split()[1] for line in in_ns(n, tool + "-save", "-t", "filter").stdout.splitlines()
                            if line.startswith(":FORWARD ")]
                for n in lab.nodes for tool in ("iptables", "ip6tables")}

    try:
        assert set(sum(policies().values(), [])) == {"DROP"}
        check = playbook(lab, "site", "--check", "--diff")
        assert node_changes(check.stdout) == [], check.stdout[-4000:]
        assert unchanged(check), check.stdout[-4000:]
        run = playbook(lab, "site")
        assert node_changes(run.stdout) == [], run.stdout[-4000:]
        assert set(sum(policies().values(), [])) == {"DROP"}
        verify = playbook(lab, "verify")
        out = verify.stdout
        assert "PASSED" in out, out[-5000:]
        for family in ("IPv4", "IPv6"):
            # every pod reaches every pod, across nodes too (the report says "9 of 9 ok"; older ones "9/9 all ok")
            assert re.search(r"pod -> pod \(%s\): 9 ?(of|/) ?9 (all )?ok" % family, out), out[-5000:]
        playbook(lab, "teardown")
        assert set(sum(policies().values(), [])) == {"DROP"}, policies()
        for node in lab.nodes:
            # teardown puts forwarding off first, accept_ra back after: the node keeps its RA default route
            assert sysctl(node, "net.ipv6.conf.all.forwarding") == "0"
            assert sysctl(node, "net.ipv6.conf.eth0.accept_ra") == "1"
            assert ra_default_routes(node), "%s lost its RA default route in teardown" % node
    finally:
        for node in hosts:
            for tool in ("iptables", "ip6tables"):
                in_ns(node, tool, "-P", "FORWARD", "ACCEPT")


def test_the_sender_is_stopped_by_its_pid_when_the_lab_goes(lab: Lab):
    pid = int((ra_dir(lab) / "ra.pid").read_text().strip())
    assert os.path.exists("/proc/%d" % pid)
    lab.playbook("absent")
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or "Z" in open("/proc/%d/stat" % pid).read().split()[2],
               5, "the RA sender (pid %d) still runs after the lab was removed" % pid)
