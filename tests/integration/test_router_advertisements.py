# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""What ordinary hosts do to the network must not break it: real router advertisements and an operator's FORWARD
policy of DROP, on a dual-stack lab whose nodes learn their IPv6 default route from the lab router's real
advertisements (ICMPv6 type 134, ``proto ra`` routes the kernel installs and purges by itself) and whose inventory
gives no podnet_node_ip (node IPs come from the nodes' facts, as on most real inventories).

The tests run in order on one lab: the first converge, a router outage and an operator's DROP (one round of
converges, each case asserted by its own test), teardown.
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
    spec.build()
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


def policies(lab: Lab):
    """The FORWARD policy of every node, both families."""
    return {(n, tool): [line.split()[1] for line in in_ns(n, tool + "-save", "-t", "filter").stdout.splitlines()
                        if line.startswith(":FORWARD ")]
            for n in lab.nodes for tool in ("iptables", "ip6tables")}


def set_forward_policy(lab: Lab, policy: str):
    return {(n, tool): in_ns(n, tool, "-P", "FORWARD", policy).returncode
            for n in lab.nodes for tool in ("iptables", "ip6tables")}


@pytest.fixture(scope="module")
def outage_round(lab: Lab):
    """One round of converges for two cases: a router outage (the router's advertisement with router lifetime 0
    takes the default route away) and an operator's FORWARD policy of DROP. Both are in place during a
    ``site --check --diff`` and a ``site``; then the router is heard again. The node IPs: the middle node's is given
    by podnet_node_ip (case node-ip-given), the others' come from their facts (case node-ip-from-facts). Each test
    asserts its own case's evidence from the round."""
    if any(sysctl(n, "net.ipv6.conf.all.forwarding") != "1" for n in lab.nodes):
        playbook(lab, "site")  # a test of this round run alone: the first converge first
    ev = {"case": {n: "node-ip-given" if n == lab.nodes[1] else "node-ip-from-facts" for n in lab.nodes}}
    ev["set_drop"] = set_forward_policy(lab, "DROP")
    ev["policies_before"] = policies(lab)
    ev["converged"] = {n: node_state(lab, n) for n in lab.nodes}
    host_vars = lab.inventory_dir / "host_vars"
    # the same address, given in the inventory (host_vars beside hosts.yml)
    host_vars.mkdir(exist_ok=True)
    for i, node in enumerate(lab.nodes):
        if ev["case"][node] == "node-ip-given":
            (host_vars / ("%s.yml" % node)).write_text(
                "podnet_node_ip: [172.27.58.%d/24, 'fd00:27:58::%d/64']\n" % (11 + i, 11 + i))
    try:
        advertise(lab, 0)
        try:
            wait_until(lambda: not any(ra_default_routes(n) for n in lab.nodes), 10,
                       "the nodes still hold the RA default route after an advertisement with router lifetime 0")
            ev["check"] = playbook(lab, "site", "--check", "--diff")
            ev["run"] = playbook(lab, "site")
            ev["accept_ra"] = {n: sysctl(n, "net.ipv6.conf.eth0.accept_ra") for n in lab.nodes}
            ev["after"] = {n: node_state(lab, n) for n in lab.nodes}
            ev["policies_after"] = policies(lab)
        finally:
            advertise(lab, 1800)
            shutil.rmtree(host_vars, ignore_errors=True)
        try:
            wait_until(lambda: all_routed(lab), 10, "the nodes did not learn the default route again from the "
                                                    "router's next advertisement (deaf to router advertisements)")
            ev["heard_again"] = ""
        except pytest.fail.Exception as failed:
            ev["heard_again"] = str(failed)
        yield ev
    finally:
        set_forward_policy(lab, "ACCEPT")


def test_a_router_outage_changes_nothing_and_the_router_is_heard_again(lab: Lab, outage_round):
    """During an outage, a converge succeeds and changes nothing, the node IPs found in the facts or given by
    podnet_node_ip alike; accept_ra stays 2, so the router's next advertisement is heard again although the node
    forwards. (The round also holds the operator's DROP of the next test.)"""
    ev = outage_round
    case = ev["case"]
    assert unchanged(ev["check"]), "%s\n%s" % (case, ev["check"].stdout[-4000:])
    assert unchanged(ev["run"]), "a converge during the outage changed something (%s):\n%s" % (
        case, ev["run"].stdout[-4000:])
    for node in lab.nodes:
        assert ev["accept_ra"][node] == "2", (node, case[node])
        assert_same(ev["converged"][node], ev["after"][node],
                    "the converge during the outage changed %s (%s)" % (node, case[node]))
    assert ev["heard_again"] == "", ev["heard_again"]
    for node in lab.nodes:
        assert ra_default_routes(node)[0]["dev"] == "eth0"


def test_an_operator_forward_policy_of_drop_is_kept(lab: Lab, outage_round):
    """The FORWARD policy is the host's: a converge, --check and teardown leave the operator's DROP alone, and
    PODNET-FORWARD keeps pods on different nodes reaching each other under it. (The converge and --check of the
    round ran during the previous test's router outage too.)"""
    ev = outage_round
    assert set(ev["set_drop"].values()) == {0}, ev["set_drop"]
    try:
        assert set(sum(ev["policies_before"].values(), [])) == {"DROP"}, ev["policies_before"]
        check = ev["check"]
        assert node_changes(check.stdout) == [], check.stdout[-4000:]
        assert unchanged(check), check.stdout[-4000:]
        run = ev["run"]
        assert node_changes(run.stdout) == [], run.stdout[-4000:]
        assert set(sum(ev["policies_after"].values(), [])) == {"DROP"}, ev["policies_after"]
        verify = playbook(lab, "verify")
        out = verify.stdout
        assert "PASSED" in out, out[-5000:]
        for family in ("IPv4", "IPv6"):
            # every pod reaches every pod, across nodes too (the report says "9 of 9 ok"; older ones "9/9 all ok")
            assert re.search(r"pod -> pod \(%s\): 9 ?(of|/) ?9 (all )?ok" % family, out), out[-5000:]
        playbook(lab, "teardown")
        assert set(sum(policies(lab).values(), [])) == {"DROP"}, policies(lab)
        for node in lab.nodes:
            # teardown puts forwarding off first, accept_ra back after: the node keeps its RA default route
            assert sysctl(node, "net.ipv6.conf.all.forwarding") == "0"
            assert sysctl(node, "net.ipv6.conf.eth0.accept_ra") == "1"
            assert ra_default_routes(node), "%s lost its RA default route in teardown" % node
    finally:
        set_forward_policy(lab, "ACCEPT")


def test_the_sender_is_stopped_by_its_pid_when_the_lab_goes(lab: Lab):
    pid = int((ra_dir(lab) / "ra.pid").read_text().strip())
    assert os.path.exists("/proc/%d" % pid)
    lab.playbook("absent")
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or "Z" in open("/proc/%d/stat" % pid).read().split()[2],
               5, "the RA sender (pid %d) still runs after the lab was removed" % pid)
