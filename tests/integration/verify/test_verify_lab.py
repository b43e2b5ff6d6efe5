# SPDX-License-Identifier: Apache-2.0
"""`ansible-playbook podnet.cluster.verify` on a three-node lab: it passes on a good network and fails, naming
the broken probes, when a route is missing, when pod traffic is NATed and when the masquerade is gone.

Every run is checked (in ``Lab.verify``) to leave no probe server running and no probe record behind.
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


def test_good_network_passes_dual_stack(lab):
    run = lab.verify()
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


def test_fails_when_a_route_between_nodes_is_missing(lab):
    lab.ip("node1", "route", "del", pod_v4(2))
    try:
        run = lab.verify()
    finally:
        lab.ip("node1", "route", "add", pod_v4(2), "via", "172.30.77.12")
    assert run.rc != 0, run.text
    assert not run.result["passed"]
    failed = failures(run)
    assert ("pod_pod", 4, "node1", "node2") in failed
    assert ("node_pod", 4, "node1", "node2") in failed
    # replies from node1 to node2's pods have no route either
    assert ("pod_pod", 4, "node2", "node1") in failed
    assert not [k for k in failed if k[1] == 6], "IPv6 is untouched"
    assert run.cells("pod_pod")[("node2", "node3")] == "ok"
    assert run.cells("pod_pod")[("node1", "node2")].startswith("FAIL")
    assert "node1" in run.failed_hosts()
    assert "IPv4 pod on node1 -> pod on node2 (10.244.2.254)" in run.report


def test_fails_when_pod_to_pod_traffic_is_nated(lab):
    rule = ["-t", "nat", "-I", "POSTROUTING", "1", "-s", pod_v4(1), "-j", "MASQUERADE"]
    lab.exec("node1", "iptables", *rule)
    try:
        run = lab.verify()
    finally:
        lab.exec("node1", "iptables", "-t", "nat", "-D", "POSTROUTING", "-s", pod_v4(1), "-j", "MASQUERADE")
    assert run.rc != 0, run.text
    failed = failures(run)
    for dst in ("node2", "node3"):
        failure = failed[("pod_pod", 4, "node1", dst)]
        assert failure["seen"] == "172.30.77.11", failure
        assert "NAT" in failure["reason"]
        assert run.cells("pod_pod")[("node1", dst)] == "FAIL (172.30.77.11)"
        assert ("pod_node", 4, "node1", dst) in failed
    assert run.cells("pod_pod")[("node2", "node1")] == "ok"
    assert not [k for k in failed if k[1] == 6 or k[2] != "node1"]


def test_fails_when_the_masquerade_is_removed(lab):
    lab.masquerade_jump("node3", 4, "-D")
    lab.masquerade_jump("node3", 6, "-D")
    try:
        run = lab.verify()
    finally:
        lab.masquerade_jump("node3", 4, "-A")
        lab.masquerade_jump("node3", 6, "-A")
    assert run.rc != 0, run.text
    failed = failures(run)
    assert set(failed) == {("egress", 4, "node3", "external"), ("egress", 6, "node3", "external")}
    assert "timeout" in failed[("egress", 4, "node3", "external")]["reason"]
    assert run.failed_hosts() == ["node1", "node2", "node3"]


def test_same_node_pod_to_pod_is_proven_with_two_pods(lab):
    """Frames between two ports of node1's bridge are dropped (nft, bridge family, forward hook): pods on
    node1 can still reach the gateway and other nodes, but not each other. Only the same-node cells of node1
    may fail; a pod talking to itself would not notice."""
    table = "podnet_test_same_node"
    lab.exec("node1", "nft", "add", "table", "bridge", table)
    try:
        lab.exec("node1", "nft", "add", "chain", "bridge", table, "ports",
                 "{ type filter hook forward priority 0; policy drop; }")
        run = lab.verify()
    finally:
        lab.exec("node1", "nft", "delete", "table", "bridge", table)
    assert run.rc != 0, run.text
    failed = failures(run)
    assert set(failed) == {("pod_pod", 4, "node1", "node1"), ("pod_pod", 6, "node1", "node1")}, run.report
    # the frames never reach the second pod: no ARP answer (the diagnosis says so, also when the kernel has
    # already dropped the failed entry), or no answer at all. The machine's neighbour table is one for all its
    # namespaces: only when the kernel itself counted refusals for a full table (other labs running beside this
    # one) may the diagnosis say so instead, with that count.
    reason = failed[("pod_pod", 4, "node1", "node1")]["reason"]
    category = failed[("pod_pod", 4, "node1", "node1")]["category"]
    if "for a full table during the probes" in reason:
        assert category == "capacity", reason
    else:
        assert "neighbour FAILED" in reason or "timeout" in reason, reason
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


def test_verify_changes_no_state_file(lab):
    """verify plans in check mode: a state file that the plan would rewrite, or one that does not exist,
    is left exactly as it was."""
    state = lab.inventory.parent / ".podnet_state.yml"
    lock = lab.inventory.parent / ".podnet_state.yml.lock"
    if state.exists():
        state.unlink()
    if lock.exists():
        lock.unlink()
    run = lab.verify()
    assert run.rc == 0, run.text
    assert not state.exists(), "verify wrote the state file"
    # a state file that lacks node3: the plan would add it and rewrite the file
    record = state.parent / "record-plan.yml"   # the plan role as podnet.cluster.site's record step runs it
    record.write_text("- hosts: podnet_nodes\n  gather_facts: false\n  roles: [podnet.cluster.plan]\n")
    stale = lab.playbook(playbook=str(record))
    record.unlink()
    assert stale.rc == 0, stale.text
    data = yaml.safe_load(state.read_text())
    del data["nodes"]["node3"]
    state.write_text(yaml.safe_dump(data, sort_keys=False))
    os.utime(state, (1_000_000_000, 1_000_000_000))
    before = (state.read_bytes(), state.stat().st_mtime_ns)
    run = lab.verify()
    assert run.rc == 0, run.text
    assert (state.read_bytes(), state.stat().st_mtime_ns) == before, "verify rewrote the state file"
    plan = run.task("Plan the pod network of the whole cluster")
    assert next(iter(plan.values()))["changed"], "the plan would have changed the file (check mode said so)"
    state.unlink()


def test_verify_creates_no_lock_file(lab):
    lock = lab.inventory.parent / ".podnet_state.yml.lock"
    if lock.exists():
        lock.unlink()
    run = lab.verify()
    assert run.rc == 0, run.text
    assert not lock.exists(), "verify created %s" % lock


def test_check_mode_starts_nothing(lab):
    run = lab.verify("--check")
    assert run.rc == 0, run.text
    assert run.tasks("Judge the probes of every node") == []
    said = run.task("Say what check mode leaves out")
    assert "runs 20 probes" in said["node1"]["msg"]


@pytest.mark.skipif(OLDEST_PYTHON is None, reason="no Python 3.8 on this machine (the oldest target Python)")
def test_verify_on_the_oldest_target_python(lab):
    """Every module and the probe servers on Python 3.8 (the oldest target Python claimed): the interpreter is
    a wrapper that records each call and runs python3.8 (so the probe servers, started with the module's
    own interpreter, run on 3.8 too: os.setns is 3.12+, 3.8 takes the ctypes path)."""
    wrapper = lab.root / "python3.8-logged"
    calls = lab.root / "python3.8-calls"
    wrapper.write_text("#!/bin/sh\necho \"$$ $*\" >> %s\nexec %s \"$@\"\n" % (calls, OLDEST_PYTHON))
    wrapper.chmod(0o755)
    run = lab.verify("-e", json.dumps({"ansible_python_interpreter": str(wrapper)}))
    assert run.rc == 0, run.text
    assert run.result["passed"] and run.result["total"] == run.result["ok_count"] == 60, run.report
    # every module call of every host (3 nodes, 3 module tasks each: start, probe, clean up; and the external host's two)
    assert len(calls.read_text().splitlines()) >= 3 * 3 + 2, "the modules did not run through python3.8"


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
