"""`ansible-playbook podnet.cluster.verify` on a three-node lab: it passes on a good network and fails, naming
the broken probes, when a route is missing, when pod traffic is NATed and when the masquerade is gone.

Every run is checked (in ``Lab.verify``) to leave no probe server running and no probe record behind.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from verify_lab_lib import EXTERNAL_V4, make_lab, pod_v4


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
    assert endpoints["node2"]["pod_ips"] == ["10.244.2.254", "fd00:10:244:2:ffff:ffff:ffff:ffff"]
    # docker + cni: host-local hands out the lower half only
    node3_v4 = endpoints["node3"]["pod_ips"][0]
    assert node3_v4.startswith("10.244.3.") and 2 <= int(node3_v4.rsplit(".", 1)[1]) <= 126
    assert "PASSED: 60 of 60 probes ok" in run.report
    assert "pod -> external (IPv6 2001:db8:51::10 port 47300): 3/3 all ok" in run.report
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


def test_check_mode_starts_nothing(lab):
    run = lab.verify("--check")
    assert run.rc == 0, run.text
    assert run.tasks("Judge the probes of every node") == []
    said = run.task("Say what check mode leaves out")
    assert "runs 20 probes" in said["node1"]["msg"]


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
    assert "pod -> external (IPv4 198.51.100.10 port 8080): 3/3 all ok" in run.report
    assert run.tasks("Start the probe server on the external host")[0]["node1"].get("skipped")
