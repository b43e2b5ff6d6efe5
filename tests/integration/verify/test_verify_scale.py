# SPDX-License-Identifier: Apache-2.0
"""verify on a 30-node lab (marker ``scale``: ``pytest -m scale``): the full matrix passes three times in a row
on a healthy cluster, and a sampled run names the one node whose bridge is down.

The lab is built by the lab playbook (``<prefix><pid>-node1..30``, one switch, other CIDRs than the default) and
converged by ``site`` once, in the same ansible-playbook run as the three full verifies. Before the lab gave its
hosts permanent underlay neighbours, the full matrix on 30 nodes overflowed the machine's one ARP table and failed
44 of 2,730 probes (lab/docs/lab.md). Each ansible-playbook run's wall time and the machine's load are printed
(``-s``) so a slow run can be told from a failing one.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from lib import cputime, forkserver
from lib.labtools import BIN, REPO, Lab, new_lab
from verify_lab_lib import Run

pytestmark = pytest.mark.scale

PREFIX = "pvs"
NODES = 30
CLUSTER = "10.96.0.0/14"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("scale") / "lab", request, count=NODES,
                   lab_vars={"podnet_lab_subnet": "172.27.0.0/24",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": [CLUSTER],
                                                           "podnet_node_prefix_ipv4": 23,
                                                           "podnet_runtimes": ["cni"],
                                                           "podnet_verify_timeout": 3}})
    spec.build()
    return spec


@pytest.fixture(scope="module")
def converged(lab: Lab, tmp_path_factory) -> Run:
    """``site`` once, then podnet.cluster.verify three times: one ansible-playbook run of four imported
    playbooks (one run's start and one plan instead of four). Each verify play starts its probe pods, probes the
    full matrix, judges and removes its probes, as a run of its own does; the plan it probes is the one site
    applied (verify plans only when its facts are not known yet). The run's result, whatever it is, is the
    first test's to judge; the lab is converged when the first verify play started (site has
    any_errors_fatal: a failure on any node ends the run)."""
    playbook = tmp_path_factory.mktemp("scale-playbook") / "site-and-verify-three-times.yml"
    playbook.write_text("- name: Converge\n  ansible.builtin.import_playbook: podnet.cluster.site\n" +
                        "".join("- name: Verify, run %d\n  ansible.builtin.import_playbook: podnet.cluster.verify\n"
                                % n for n in (1, 2, 3)))
    return verify(lab, playbook=str(playbook), timeout=2400)


def verify(lab: Lab, playbook: str = "podnet.cluster.verify", timeout: int = 900, **extra) -> Run:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
               ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_FORCE_COLOR="0", PATH="%s:%s" % (BIN, os.environ["PATH"]))
    argv = [str(BIN / "ansible-playbook"), playbook, "-i", str(lab.hosts_yml)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    start, cpu = time.monotonic(), cputime.children_cpu()
    proc = forkserver.run(argv, cwd=REPO, env=env, timeout=timeout)
    cputime.record_run(argv, time.monotonic() - start, cputime.children_cpu() - cpu)
    print("%s %s: %.1f s, load %s" % (Path(playbook).name, json.dumps(extra), time.monotonic() - start,
                                      os.getloadavg()[0]))
    return Run(proc)


VERIFY_PLAY = "Verify the pod network"


def verify_plays(run: Run) -> list:
    return [p for p in (run.json or {}).get("plays", []) if p["play"]["name"] == VERIFY_PLAY]


def attempt(run: Run, index: int) -> Run:
    """The ``index``-th verify play of a run of several (its tasks and results only; the stats are the run's)."""
    plays = verify_plays(run)
    if index >= len(plays):
        raise AssertionError("run %d did not start (%d verify plays ran):\n%s" % (index + 1, len(plays), run.text))
    one = Run(run.proc)
    one.json = dict(run.json, plays=[plays[index]])
    return one


def test_thirty_nodes_pass_the_full_matrix_three_times_in_a_row(converged: Run):
    for number in (1, 2, 3):
        result = attempt(converged, number - 1)
        summary = result.result
        assert summary["passed"], "run %d:\n%s" % (number, result.report)
        assert summary["sampling"]["mode"] == "full", "run %d" % number
        # IPv4 only: 3 checks x 30 x 30 ordered pairs (a node with itself included), and egress from 30 pods
        assert summary["total"] == summary["ok_count"] == 3 * NODES * NODES + NODES, "run %d" % number
        assert summary["self_checks_failed"] == [], "run %d" % number
        # above 30 nodes the report is a summary; at 30 it still shows the matrix
        assert "pod -> pod (IPv4): 900 of 900 ok" in result.report, "run %d:\n%s" % (number, result.report)
        assert result.task("Remove this node's probe pods and its probe server"), "run %d" % number
    assert converged.rc == 0, converged.text
    assert converged.failed_hosts() == [], converged.text


def test_sampled_verify_names_the_node_whose_forward_chain_drops_its_pods(lab: Lab, converged: Run, tmp_path: Path):
    """node17's FORWARD chain drops everything from and to its pod subnet (a real fault: its pods are cut off
    from the other nodes and the outside, and nothing else changes). With 3 peers per node the sample still
    reports it: every failure involves node17, and the failures are listed under node17 as source. (Setting
    its bridge down would not do: the CNI bridge plugin sets it up again when verify's probe pods start.)"""
    assert verify_plays(converged), "site did not converge the lab:\n%s" % converged.text
    broken = lab.nodes[16]
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    subnet = next(a for a in json.loads(subprocess.run(["ip", "-n", broken, "-j", "-4", "addr", "show", "cbr0"],
                                                       capture_output=True, text=True, check=True).stdout)[0]
                  ["addr_info"])
    pods = str(ipaddress.ip_interface("%s/%s" % (subnet["local"], subnet["prefixlen"])).network)
    rules = [["-s", pods, "-j", "DROP"], ["-d", pods, "-j", "DROP"]]
    for rule in rules:
        subprocess.run(["ip", "netns", "exec", broken, "iptables", "-I", "FORWARD", "1"] + rule, check=True)
    try:
        result = verify(lab, podnet_verify_peers=3, podnet_verify_seed=5, podnet_report_dir=str(report_dir))
    finally:
        for rule in rules:
            subprocess.run(["ip", "netns", "exec", broken, "iptables", "-D", "FORWARD"] + rule, check=True)
    assert result.rc != 0, result.text
    summary = result.result
    assert summary["sampling"]["mode"] == "sampled" and summary["sampling"]["peers"] == 3
    assert summary["sampling"]["seed"] == 5
    assert summary["total"] == NODES * (3 * (3 + 1) + 1)
    assert summary["failures"], result.report
    assert all(broken in (f["source"], f["target"]) for f in summary["failures"]), result.report
    assert {f["category"] for f in summary["failures"]} == {"network"}, result.report
    # node17's pod reaches no other node and not the outside: its pod -> pod, pod -> node (to its 3 peers)
    # and egress cells fail, and node17 is named as their source
    mine = summary["failures_by_source"][broken]
    assert len(mine) >= 3 + 3 + 1, result.report
    assert "IPv4 pod on %s -> external" % broken in " ".join(mine), mine
    assert "Probes: sampled: 3 peers per node (podnet_verify_peers 3), seed 5" in result.report
    assert all("timeout" in f["reason"] for f in summary["failures"]), result.report
    written = json.loads((report_dir / "verify.json").read_text())
    assert written["failed_count"] == summary["failed_count"] and written["sampling"]["seed"] == 5
