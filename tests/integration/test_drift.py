# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Drift on a lab built unlike the defaults (named nodes, dual stack, /25 and /72 blocks,
both runtimes): each fault injected on one node of a converged lab is reported by ``site --check`` on that
node only (the node task, not the plan), healed by a converge back to exactly the converged state, and the
cluster verifies afterwards."""

from __future__ import annotations

import json
import os

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
    spec.playbook("present")
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


FAULTS = [
    pytest.param("bridge deleted", _bridge_deleted, id="bridge-deleted"),
    pytest.param("bridge addresses removed", _addresses_removed, id="addresses-removed"),
    pytest.param("our routes flushed", _routes_flushed, id="routes-flushed"),
    pytest.param("stale route to a departed node", _stale_route, id="stale-route"),
    pytest.param("chains flushed and jumps deleted", _chains_flushed, id="chains-flushed"),
    pytest.param("ip_forward 0", _forwarding_off, id="ip-forward-0"),
    pytest.param("Docker keys removed", _docker_keys_removed, id="docker-keys-removed"),
    pytest.param("CNI conflist deleted", _conflist_deleted, id="conflist-deleted"),
]


@pytest.mark.parametrize("label,inject", FAULTS)
def test_fault_on_one_node_is_reported_there_only_and_healed(lab: Lab, label, inject):
    hosts = lab_hosts(str(lab.hosts_yml))
    faulty, other = lab.nodes
    # The lab is converged here: the fixture converged it and every case ends with a --check that changes nothing
    # (were it not, the --check below would name the other node too, or the heal would not give back this state).
    converged = {n: node_state(lab, n) for n in lab.nodes}
    inject(hosts[faulty])
    try:
        assert node_state(lab, faulty) != converged[faulty], "%s: the fault changed nothing" % label
        check = playbook(lab, "site", "--check", "--diff")
        assert "Pod network of this node" in check.stdout
        assert node_changes(check.stdout) == [faulty], "%s: --check reported %s (only %s has the fault; was the lab " \
            "converged before it?)\n%s" % (label, node_changes(check.stdout), faulty, check.stdout[-4000:])
        # --check wrote nothing: the fault is still there.
        assert node_state(lab, faulty) != converged[faulty], "%s: --check healed it" % label

        heal = playbook(lab, "site")
        assert node_changes(heal.stdout) == [faulty], heal.stdout[-4000:]
        for n in lab.nodes:
            assert_same(converged[n], node_state(lab, n), "%s: after the converge %s" % (label, n))
        again = playbook(lab, "site", "--check")
        assert node_changes(again.stdout) == [] and unchanged(again), again.stdout[-3000:]
    finally:
        if node_state(lab, faulty) != converged[faulty]:
            playbook(lab, "site")

    verify = playbook(lab, "verify")
    assert "PASSED" in verify.stdout, verify.stdout[-4000:]


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
