# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Drift on a lab built unlike the defaults (named nodes, dual stack, /25 and /72 blocks,
both runtimes): each fault injected on one node of a converged lab is reported by ``site --check`` on that
node only (the node task, not the plan), healed by a converge back to exactly the converged state, and the
cluster verifies afterwards. The eight faults share one round (four on each node, no two of a kind on one node):
``--check --diff`` names each in the summary of its node and nothing more, one converge heals them all, one verify
follows."""

from __future__ import annotations

import json
import os
import re

import pytest

from lib.labtools import Lab, new_lab
from lib.netns_backend import lab_hosts
from lib.nodestate import assert_same, node_changes, node_state, playbook, unchanged

PREFIX = "pdr"
CLUSTERS = ["10.91.0.0/17", "fd00:91::/56"]
# A block of the cluster no node holds: what a departed node's subnet looks like.
DEPARTED = "10.91.64.0/25"
DAEMON_JSON = "/etc/docker/daemon.json"
CONFLIST = "/etc/cni/net.d/10-podnet.conflist"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("drift") / "lab", request, node_names=["north", "south"],
                   lab_vars={"podnet_lab_subnet": "172.27.41.0/24",
                             "podnet_lab_subnet_ipv6": "fd00:27:41::/64",
                             "podnet_lab_external_cidr": "198.18.41.0/24",
                             "podnet_lab_external_cidr_ipv6": "fd00:198:41::/64",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": CLUSTERS,
                                                           "podnet_node_prefix_ipv4": 25,
                                                           "podnet_node_prefix_ipv6": 72,
                                                           "podnet_runtimes": ["docker", "cni"]}})
    spec.build()
    playbook(spec, "site")
    return spec


def _bridge_deleted(host):
    host.check_output("ip link del cbr0")


def _addresses_removed(host):
    host.check_output("ip addr flush dev cbr0 scope global")


def _routes_flushed(host):
    assert host.check_output("ip route show proto 158").strip(), "no route of ours to flush"
    host.check_output("ip route flush proto 158")
    host.check_output("ip -6 route flush proto 158")


def _stale_route(host):
    peer = json.loads(host.check_output("ip -4 -json route show proto 158"))[0]["gateway"]
    host.check_output("ip route add %s via %s proto 158" % (DEPARTED, peer))


def _chains_flushed(host):
    for tool in ("iptables", "ip6tables"):
        for table, chain in (("filter", "PODNET-FORWARD"), ("nat", "PODNET-MASQ")):
            host.check_output("%s -t %s -F %s" % (tool, table, chain))
        for table in ("filter", "nat"):
            jumps = [line for line in host.check_output("%s-save -t %s" % (tool, table)).splitlines()
                     if line.startswith("-A ") and "-j PODNET-" in line]
            assert jumps, "no jump of ours in %s %s" % (tool, table)
            for line in jumps:
                host.check_output("%s -t %s -D %s" % (tool, table, line[3:]))


def _forwarding_off(host):
    host.check_output("sysctl -qw net.ipv4.ip_forward=0")


def _docker_keys_removed(host):
    keys = ("bridge", "iptables", "ip-masq", "fixed-cidr", "mtu")
    data = json.loads(host.file(DAEMON_JSON).content_string)
    assert "bridge" in data
    kept = {k: v for k, v in data.items() if k not in keys}
    host.check_output("printf '%%s\\n' '%s' > %s" % (json.dumps(kept, indent=2), DAEMON_JSON))


def _conflist_deleted(host):
    assert host.file(CONFLIST).exists
    host.check_output("rm %s" % CONFLIST)


# Each case: how it is injected, and what ``site --check --diff`` says of it in the summary line of its node (one
# item of that comma-separated line per pattern; a pattern may match the item of another case of the same kind,
# so cases of one kind never share a node in a round).
FAULTS = {
    "bridge deleted": (_bridge_deleted, [r"bridge cbr0 created"]),
    "bridge addresses removed": (_addresses_removed, [r"bridge address(es)? changed"]),
    "our routes flushed": (_routes_flushed, [r"\d+ routes? added"]),
    "stale route to a departed node": (_stale_route, [r"1 route removed"]),
    "chains flushed and jumps deleted": (_chains_flushed, [r"IPv%s %s chains changed" % (v, t) for v in "46"
                                                           for t in ("filter", "nat")]),
    "ip_forward 0": (_forwarding_off, [r"forwarding settings set"]),
    # no Docker runs on the lab's nodes: the file is set again, no restart is pending (test_lifecycle_runtimes)
    "Docker keys removed": (_docker_keys_removed, [r"daemon\.json keys set"]),
    # the conflist's directory, empty now, is no change: the conflist is written into it again
    "CNI conflist deleted": (_conflist_deleted, [r"%s created" % re.escape(CONFLIST)]),
}
# The cases of a round: those on the first node, those on the second. Faults on different nodes, and faults of
# different kinds on one node (each its own item of the node's summary), are independent: one --check --diff
# attributes each to its node, one converge heals them all, one verify follows.
ROUNDS = [
    pytest.param((("bridge deleted", "stale route to a departed node", "chains flushed and jumps deleted",
                   "CNI conflist deleted"),
                  ("bridge addresses removed", "our routes flushed", "ip_forward 0", "Docker keys removed")),
                 id="all-eight"),
]


def _summary(stdout: str, host: str):
    """The items of the summary line that ends ``host``'s diff of the node task under --check --diff."""
    section = stdout.split("Pod network of this node", 1)[1].split("\nTASK ", 1)[0]
    lines = [line for line in re.findall(r"^%s: (.*)$" % re.escape(host), section, re.M)
             if not line.startswith("restore program:")]
    return lines[-1].split(", ") if lines else []


@pytest.mark.parametrize("cases", ROUNDS)
def test_faults_are_reported_on_their_node_only_and_healed(lab: Lab, cases):
    assert sorted(FAULTS) == sorted(c for node in cases for c in node), "every case is in the round"
    hosts = lab_hosts(str(lab.hosts_yml))
    on = dict(zip(lab.nodes, cases))
    named = {n: "; ".join(on[n]) for n in lab.nodes}
    # The lab is converged here: the fixture converged it and a round ends with a --check that changes nothing
    # (were it not, the --check below would report more than the faults, or the heal would not give back this state).
    converged = {n: node_state(lab, n) for n in lab.nodes}
    faulted = dict(converged)
    try:
        for n in lab.nodes:
            for label in on[n]:
                FAULTS[label][0](hosts[n])
                now = node_state(lab, n)
                assert now != faulted[n], "%s on %s: the fault changed nothing" % (label, n)
                faulted[n] = now

        check = playbook(lab, "site", "--check", "--diff")
        assert "Pod network of this node" in check.stdout
        assert sorted(node_changes(check.stdout)) == sorted(lab.nodes), "--check reported %s (%s)\n%s" % (
            node_changes(check.stdout), named, check.stdout[-6000:])
        for n in lab.nodes:
            items = _summary(check.stdout, n)
            matched = set()
            for label in on[n]:
                for pattern in FAULTS[label][1]:
                    hits = [i for i in items if re.fullmatch(pattern, i)]
                    assert hits, "%s on %s: --check does not report it (%r in its summary %r)\n%s" % (
                        label, n, pattern, items, check.stdout[-6000:])
                    matched.update(hits)
            # Nothing reported beyond the node's own faults: no fault is reported on a node it is not on.
            assert set(items) == matched, "%s: --check reports %s beyond its faults (%s)\n%s" % (
                n, sorted(set(items) - matched), named[n], check.stdout[-6000:])
        # --check wrote nothing: every fault is still there.
        for n in lab.nodes:
            assert_same(faulted[n], node_state(lab, n), "%s (%s): --check changed the node" % (n, named[n]))

        heal = playbook(lab, "site")
        assert sorted(node_changes(heal.stdout)) == sorted(lab.nodes), "heal of %s\n%s" % (named, heal.stdout[-4000:])
        for n in lab.nodes:
            assert_same(converged[n], node_state(lab, n), "%s: after the converge %s" % (named[n], n))
        again = playbook(lab, "site", "--check")
        assert node_changes(again.stdout) == [] and unchanged(again), "after healing %s\n%s" % (
            named, again.stdout[-3000:])
    finally:
        if any(node_state(lab, n) != converged[n] for n in lab.nodes):
            playbook(lab, "site")

    verify = playbook(lab, "verify")
    assert "PASSED" in verify.stdout, "after healing %s\n%s" % (named, verify.stdout[-4000:])


def test_forward_policy_drop_keeps_pods_working(lab: Lab):
    """Under a FORWARD policy of DROP (the host's, which podnet.cluster never changes; see
    test_router_advertisements.py for converge, --check and teardown under it), pods are not cut off:
    PODNET-FORWARD accepts their traffic, and verify passes under it."""
    hosts = lab_hosts(str(lab.hosts_yml))
    for n in lab.nodes:
        hosts[n].check_output("iptables -P FORWARD DROP")
    try:
        verify = playbook(lab, "verify")
        assert "PASSED" in verify.stdout, verify.stdout[-4000:]
    finally:
        for n in lab.nodes:
            hosts[n].check_output("iptables -P FORWARD ACCEPT")
