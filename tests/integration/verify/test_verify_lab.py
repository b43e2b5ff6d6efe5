# SPDX-License-Identifier: Apache-2.0
"""`ansible-playbook podnet.cluster.verify` on a three-node lab: it passes on a good network and fails, naming
the broken probes, when a route is missing, when pod traffic is NATed and when the masquerade is gone.

Every run is checked (in ``Lab.verify``) to leave no probe server running and no probe record behind. Runs are
shared by module-scoped fixtures, each test asserting its part: the four faults are two rounds of two faults on
different nodes, one good run serves the good network and the files verify must not write, and the run beside a
stale state file is the one on the oldest target Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from verify_lab_lib import EXTERNAL_V4, OLDEST_PYTHON, make_lab, pod_v4


def failures(run):
    return {(f["check"], f["family"], f["source"], f["target"]): f for f in run.result["failures"]}


@pytest.fixture(scope="module")
def good(lab):
    """One verify of the good network, with no state file and no lock file beside the inventory: it serves the
    test of the good network and those of the files verify must not write. Yields (run, state file written,
    lock file written)."""
    state = lab.inventory.parent / ".podnet_state.yml"
    lock = lab.inventory.parent / ".podnet_state.yml.lock"
    for path in (state, lock):
        if path.exists():
            path.unlink()
    run = lab.verify()
    return run, state.exists(), lock.exists()


def test_good_network_passes_dual_stack(good):
    run = good[0]
    assert run.rc == 0, run.text
    result = run.result
    assert result["passed"], run.report
    assert result["families"] == [4, 6]
    assert result["nodes"] == ["node1", "node2", "node3"]
    # 3 checks x 2 families x 9 ordered pairs, plus egress for 2 families x 3 nodes
    assert result["total"] == result["ok_count"] == 60
    endpoints = result["endpoints"]
    assert endpoints["node1"]["pod_mode"] == "cni" and endpoints["node3"]["pod_mode"] == "cni"
    assert endpoints["node2"]["pod_mode"] == "veth"
    # no allocator on node2: its two veth pods take the highest addresses of its blocks
    assert endpoints["node2"]["pod_ips"] == ["10.244.2.254", "fd00:10:244:2:ffff:ffff:ffff:ffff"]
    assert endpoints["node2"]["peer_ips"] == ["10.244.2.253", "fd00:10:244:2:ffff:ffff:ffff:fffe"]
    # docker + cni: both pods get host-local leases in the lower half only, never Docker's upper half
    for key in ("pod_ips", "peer_ips"):
        node3_v4 = endpoints["node3"][key][0]
        assert node3_v4.startswith("10.244.3.") and 2 <= int(node3_v4.rsplit(".", 1)[1]) <= 126
    for name in ("node1", "node2", "node3"):  # two distinct pods on every node
        assert set(endpoints[name]["pod_ips"]).isdisjoint(endpoints[name]["peer_ips"])
    # the same-node cell went from the first pod to the second one, which answered
    same = {p["id"]: p for p in run.task("Run every probe of this node in one call")["node1"]["probes"]}
    assert same["pod_pod/4/node1/node1"]["server"] == "podnet-verify-peer-node1"
    assert same["pod_pod/4/node1/node1"]["target"] == endpoints["node1"]["peer_ips"][0]
    assert same["pod_pod/4/node1/node1"]["seen"] == endpoints["node1"]["pod_ips"][0]
    # every probe server listened on its probe addresses only
    started = run.task("Start this node's two probe pods and its probe server")
    for name, res in started.items():
        i = int(name[-1])
        pod, peer, server = res["pods"]
        assert server["name"] == "podnet-verify-node-" + name and server["mode"] == "host"
        assert sorted(server["listening"]) == ["172.30.77.%d:47300" % (10 + i), "[fd30:77::%x]:47300" % (0x10 + i)]
        assert server["lifetime"] == 1800
        assert pod["name"] == "podnet-verify-pod-" + name and peer["name"] == "podnet-verify-peer-" + name
    assert sorted(started["node2"]["pods"][0]["listening"]) == ["10.244.2.254:47300",
                                                                "[fd00:10:244:2:ffff:ffff:ffff:ffff]:47300"]
    # every node checked its own servers from inside their namespaces: they served
    for name, res in run.task("Run every probe of this node in one call").items():
        assert len(res["self_checks"]) == 6 and all(c["ok"] for c in res["self_checks"]), res["self_checks"]
    assert result["sampling"]["mode"] == "full" and run.report.startswith("Probes: full matrix (3 nodes")
    external = next(iter(run.task("Start the probe server on the external host").values()))
    assert sorted(external["listening"]) == ["198.51.100.10:47300", "[2001:db8:51::10]:47300"]
    assert "PASSED: 60 of 60 probes ok" in run.report
    assert "pod -> external (IPv6 2001:db8:51::10 port 47300): 3 of 3 ok" in run.report
    assert run.failed_hosts() == []


#: the failures of each fault case of the two rounds below
MASQUERADE_CASE = {("egress", 4, "node3", "external"), ("egress", 6, "node3", "external")}
SAME_NODE_CASE = {("pod_pod", 4, "node1", "node1"), ("pod_pod", 6, "node1", "node1")}


def route_case(key):
    """A failure the missing route of node1 to node2's pods explains: IPv4, between node1 and node2."""
    return key[1] == 4 and key[2] != key[3] and {key[2], key[3]} <= {"node1", "node2"}


def nat_case(key):
    """A failure the NAT of node3's pod traffic may explain: IPv4, from node3 (its same-node cell included: the
    NAT may apply to the bridged frames too)."""
    return key[1] == 4 and key[2] == "node3"


@pytest.fixture(scope="module")
def route_and_nat(lab):
    """One verify with two faults on different nodes: node1 lost its route to node2's IPv4 pods, and node3 NATs
    the traffic of its IPv4 pods to the other nodes. Each test asserts its case, and that no failure is
    outside the two cases."""
    rule = ["POSTROUTING", "-s", pod_v4(3), "-j", "MASQUERADE"]
    lab.ip("node1", "route", "del", pod_v4(2))
    try:
        lab.exec("node3", "iptables", "-t", "nat", "-I", rule[0], "1", *rule[1:])
        try:
            return lab.verify()
        finally:
            lab.exec("node3", "iptables", "-t", "nat", "-D", *rule)
    finally:
        lab.ip("node1", "route", "add", pod_v4(2), "via", "172.30.77.12")


@pytest.fixture(scope="module")
def masquerade_and_same_node(lab):
    """One verify with two faults on different nodes: node3's masquerade is gone (IPv4 and IPv6), and node1's
    bridge drops the frames between its ports (nft, bridge family, forward hook). Between them they explain
    every failure."""
    table = "podnet_test_same_node"
    lab.masquerade_jump("node3", 4, "-D")
    lab.masquerade_jump("node3", 6, "-D")
    try:
        lab.exec("node1", "nft", "add", "table", "bridge", table)
        try:
            lab.exec("node1", "nft", "add", "chain", "bridge", table, "ports",
                     "{ type filter hook forward priority 0; policy drop; }")
            return lab.verify()
        finally:
            lab.exec("node1", "nft", "delete", "table", "bridge", table)
    finally:
        lab.masquerade_jump("node3", 4, "-A")
        lab.masquerade_jump("node3", 6, "-A")


def test_fails_when_a_route_between_nodes_is_missing(route_and_nat):
    run = route_and_nat
    assert run.rc != 0, run.text
    assert not run.result["passed"]
    failed = failures(run)
    assert ("pod_pod", 4, "node1", "node2") in failed, "route case: %s" % sorted(failed)
    assert ("node_pod", 4, "node1", "node2") in failed, "route case: %s" % sorted(failed)
    # replies from node1 to node2's pods have no route either
    assert ("pod_pod", 4, "node2", "node1") in failed, "route case: %s" % sorted(failed)
    assert not [k for k in failed if k[1] == 6], "IPv6 is untouched"
    # every failure is of one of the two faults of the round (the NAT of node3's pods is the other one)
    assert [k for k in failed if not route_case(k) and not nat_case(k)] == [], "route case: %s" % sorted(failed)
    assert run.cells("pod_pod")[("node2", "node3")] == "ok"
    assert run.cells("pod_pod")[("node1", "node2")].startswith("FAIL")
    assert "node1" in run.failed_hosts()
    assert "IPv4 pod on node1 -> pod on node2 (10.244.2.254)" in run.report


def test_fails_when_pod_to_pod_traffic_is_nated(route_and_nat):
    """node3 NATs its pods' traffic (in the round of node1's missing route, which involves node1 and node2 only)."""
    run = route_and_nat
    assert run.rc != 0, run.text
    failed = failures(run)
    for dst in ("node1", "node2"):
        failure = failed[("pod_pod", 4, "node3", dst)]
        assert failure["seen"] == "172.30.77.13", "NAT case: %s" % failure
        assert "NAT" in failure["reason"], "NAT case: %s" % failure
        assert run.cells("pod_pod")[("node3", dst)] == "FAIL (172.30.77.13)", "NAT case"
        assert ("pod_node", 4, "node3", dst) in failed, "NAT case: %s" % sorted(failed)
    assert run.cells("pod_pod")[("node1", "node3")] == "ok", "NAT case: replies are not NATed"
    # no other failure than IPv4 ones from node3, but those of node1's missing route (the other fault of the round)
    assert not [k for k in failed if not route_case(k) and (k[1] == 6 or k[2] != "node3")], sorted(failed)


def test_fails_when_the_masquerade_is_removed(masquerade_and_same_node):
    run = masquerade_and_same_node
    assert run.rc != 0, run.text
    failed = failures(run)
    # the round's other fault (node1's bridge) fails the same-node cells of node1, and nothing else
    assert set(failed) - SAME_NODE_CASE == MASQUERADE_CASE, "masquerade case: %s" % sorted(failed)
    assert "timeout" in failed[("egress", 4, "node3", "external")]["reason"]
    assert run.failed_hosts() == ["node1", "node2", "node3"]


def test_same_node_pod_to_pod_is_proven_with_two_pods(masquerade_and_same_node):
    """Frames between two ports of node1's bridge are dropped (nft, bridge family, forward hook): pods on
    node1 can still reach the gateway and other nodes, but not each other. Only the same-node cells of node1
    may fail; a pod talking to itself would not notice. (The same round removes node3's masquerade: its two
    egress cells fail too.)"""
    run = masquerade_and_same_node
    assert run.rc != 0, run.text
    failed = failures(run)
    assert set(failed) - MASQUERADE_CASE == SAME_NODE_CASE, "same-node case: %s" % run.report
    # the frames never reach the second pod: no ARP answer (the diagnosis says so: FAILED, or INCOMPLETE when the
    # kernel is still asking as the probe gives up under load, also when the kernel has already dropped the failed
    # entry), or no answer at all. The machine's neighbour table is one for all its
    # namespaces: only when the kernel itself counted refusals for a full table (other labs running beside this
    # one) may the diagnosis say so instead, with that count.
    reason = failed[("pod_pod", 4, "node1", "node1")]["reason"]
    category = failed[("pod_pod", 4, "node1", "node1")]["category"]
    if "for a full table during the probes" in reason:
        assert category == "capacity", reason
    else:
        assert any(word in reason for word in ("neighbour FAILED", "neighbour INCOMPLETE", "timeout")), reason
        assert "may be full" not in reason, reason
        assert category == "network", reason
    assert "IPv4 pod on node1 -> second pod on node1" in run.report
    assert run.cells("pod_pod")[("node1", "node2")] == "ok"


def test_a_docker_only_node_is_refused_before_anything_starts(lab):
    """With podnet_runtimes [docker] Docker's fixed-cidr is the whole IPv4 block: a veth probe pod could take
    a container's address. Verify refuses, on every node, before any probe starts."""
    run = lab.verify("-e", json.dumps({"podnet_runtimes": ["docker"]}))
    assert run.rc != 0, run.text
    assert run.tasks("Start this node's two probe pods and its probe server") == [] and run.tasks("Run every probe of this node in one call") == []
    checked = run.task("Check the verify configuration")
    for name, i in (("node1", 1), ("node2", 2), ("node3", 3)):
        msg = checked[name]["msg"]
        assert ("host %s: the probe pods need 2 IPv4 addresses of 10.244.%d.0/24 that no allocator hands out, "
                "and there are none" % (name, i)) in msg, msg
        assert "Docker's fixed-cidr 10.244.%d.0/24" % i in msg and "put cni in podnet_runtimes" in msg
    assert run.failed_hosts() == ["node1", "node2", "node3"]


def test_the_role_without_a_plan_is_refused_on_every_node_before_anything_starts(lab, tmp_path):
    """The role alone, without podnet.cluster.plan before it in the play: one check per node says so, and no
    probe pod starts."""
    playbook = tmp_path / "role-alone.yml"
    playbook.write_text("- hosts: podnet_nodes\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.include_role:\n        name: podnet.cluster.verify\n")
    run = lab.playbook(playbook=str(playbook))
    assert run.rc != 0, run.text
    assert run.tasks("Start this node's two probe pods and its probe server") == [], run.text
    checked = run.task("Check the verify configuration")
    for name in ("node1", "node2", "node3"):
        assert ("podnet.cluster.verify on %s: the facts podnet_plan and podnet_node are not set; run the role "
                "podnet.cluster.plan first" % name) in checked[name]["msg"], checked[name]
    assert run.failed_hosts() == ["node1", "node2", "node3"]


@pytest.fixture(scope="module")
def stale(lab):
    """One verify beside a state file that the plan would rewrite (it lacks node3), run with Python 3.8 (the
    oldest target Python) when the machine has it: it serves both tests. The interpreter is then a wrapper
    that records each call and runs python3.8. Returns (run, the file before, the file after, the calls)."""
    state = lab.inventory.parent / ".podnet_state.yml"
    if state.exists():
        state.unlink()
    record = state.parent / "record-plan.yml"   # the plan role as podnet.cluster.site's record step runs it
    record.write_text("- hosts: podnet_nodes\n  gather_facts: false\n  roles: [podnet.cluster.plan]\n")
    made = lab.playbook(playbook=str(record))
    record.unlink()
    assert made.rc == 0, made.text
    data = yaml.safe_load(state.read_text())
    del data["nodes"]["node3"]
    state.write_text(yaml.safe_dump(data, sort_keys=False))
    os.utime(state, (1_000_000_000, 1_000_000_000))
    before = (state.read_bytes(), state.stat().st_mtime_ns)
    calls = lab.root / "python3.8-calls"
    args = []
    if OLDEST_PYTHON is not None:
        wrapper = lab.root / "python3.8-logged"
        wrapper.write_text("#!/bin/sh\necho \"$$ $*\" >> %s\nexec %s \"$@\"\n" % (calls, OLDEST_PYTHON))
        wrapper.chmod(0o755)
        args = ["-e", json.dumps({"ansible_python_interpreter": str(wrapper)})]
    try:
        run = lab.verify(*args)
        after = (state.read_bytes(), state.stat().st_mtime_ns)
    finally:
        state.unlink()
    return run, before, after, calls.read_text().splitlines() if calls.exists() else []


def test_verify_changes_no_state_file(good, stale):
    """verify plans in check mode: a state file that the plan would rewrite, or one that does not exist,
    is left exactly as it was."""
    run, state_written = good[0], good[1]
    assert run.rc == 0, run.text
    assert not state_written, "verify wrote the state file"
    # a state file that lacks node3: the plan would add it and rewrite the file
    run, before, after = stale[:3]
    assert run.rc == 0, run.text
    assert after == before, "verify rewrote the state file"
    plan = run.task("Plan the pod network of the whole cluster")
    assert next(iter(plan.values()))["changed"], "the plan would have changed the file (check mode said so)"


def test_verify_creates_no_lock_file(good, lab):
    run, lock_written = good[0], good[2]
    assert run.rc == 0, run.text
    assert not lock_written, "verify created %s" % (lab.inventory.parent / ".podnet_state.yml.lock")


def test_check_mode_starts_nothing(lab):
    run = lab.verify("--check")
    assert run.rc == 0, run.text
    assert run.tasks("Judge the probes of every node") == []
    said = run.task("Say what check mode leaves out")
    assert "runs 20 probes" in said["node1"]["msg"]


@pytest.mark.skipif(OLDEST_PYTHON is None, reason="no Python 3.8 on this machine (the oldest target Python)")
def test_verify_on_the_oldest_target_python(stale):
    """Every module and the probe servers on Python 3.8 (the oldest target Python claimed): the interpreter is
    a wrapper that records each call and runs python3.8 (so the probe servers, started with the module's
    own interpreter, run on 3.8 too: os.setns is 3.12+, 3.8 takes the ctypes path). The run is that of the
    stale state file (fixture ``stale``): the plan it computes in check mode runs on 3.8 too."""
    run, calls = stale[0], stale[3]
    assert run.rc == 0, run.text
    assert run.result["passed"] and run.result["total"] == run.result["ok_count"] == 60, run.report
    # every module call of every host (3 nodes, 3 module tasks each: start, probe, clean up; and the external host's two)
    assert len(calls) >= 3 * 3 + 2, "the modules did not run through python3.8"


@pytest.fixture(scope="module")
def ipv4_lab():
    """An IPv4-only lab whose external host runs an ordinary TCP service (not a probe server)."""
    the_lab = make_lab(dual_stack=False)
    server = None
    try:
        the_lab.build()
        server = subprocess.Popen(
            ["ip", "netns", "exec", the_lab.ns["ext"], sys.executable, "-m", "http.server", "--bind", EXTERNAL_V4,
             "8080"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(the_lab.root))
        yield the_lab
    finally:
        if server is not None:
            server.kill()
            server.wait()
        the_lab.destroy()


def test_ipv4_only_with_reachability_only_egress(ipv4_lab):
    extra = {"podnet_verify_external_host": "", "podnet_verify_external_port": 8080}
    run = ipv4_lab.verify("-e", json.dumps(extra))
    assert run.rc == 0, run.text
    result = run.result
    assert result["passed"] and result["families"] == [4]
    assert result["total"] == 3 * 9 + 3
    assert "pod -> external (IPv4 198.51.100.10 port 8080): 3 of 3 ok" in run.report
    assert run.tasks("Start the probe server on the external host")[0]["node1"].get("skipped")
