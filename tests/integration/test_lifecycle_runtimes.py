# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Lifecycle of the container runtimes, on a lab of its own (lib/lifecycle.py): a change of podnet_runtimes
converges with no leftovers, and Docker restarts go in batches, wait for the node lock and follow teardown."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from lib.labtools import BIN, Lab, run
from lib.lifecycle import Case, build_lab, converge_round, ensure_default, is_at, states, stub_docker_service
from lib.nodestate import playbook
from lib.netns_backend import lab_hosts

PREFIX = "plx"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    return build_lab(PREFIX, tmp_path_factory, request)


# One round for the three cases of podnet_runtimes, one node each way: red default -> [cni] -> [docker] -> default,
# green default -> [docker] -> [cni] -> default. Each node's state is compared on its own at every step, so every
# transition of the cases is asserted: default -> [cni] and [cni] -> [docker] (red), [cni] -> default (green),
# default -> [docker] (green), [docker] -> default (red), and [docker] -> [cni] besides (green); each step is
# idempotent.
RUNTIMES = [Case("runtimes [cni] then [docker]", [{"podnet_runtimes": ["cni"]}, {"podnet_runtimes": ["docker"]}], "red"),
            Case("runtimes [docker] then [cni]", [{"podnet_runtimes": ["docker"]}, {"podnet_runtimes": ["cni"]}],
                 "green")]


def test_runtimes_change_converges_without_leftovers(lab: Lab):
    """default -> each change in turn -> default; every state equals what a fresh converge with those settings
    gives (converged after a teardown): nothing an earlier setting made is left behind."""
    converge_round(lab, RUNTIMES)


# Where the Docker restart test left the lab (podnet_bridge_mtu 1400, converged): {lab name: {node: state}}
MTU_1400: dict = {}


@pytest.mark.parametrize("batch", [1, 2])
def test_docker_restarts_go_in_batches_and_bring_the_gateways_back(lab: Lab, tmp_path, batch):
    """A daemon.json change restarts Docker podnet_restart_batch nodes at a time; each restart is done, Docker
    active and the IPv6 pod gateways back on the bridge, before the next batch begins. The change: the default MTU
    to 1400, or back from 1400 when the previous batch size left the lab there (its state, asserted first)."""
    hosts = lab_hosts(str(lab.hosts_yml))
    log = tmp_path / "restarts.log"
    # the previous batch size left the MTU at 1400: going back to the default changes daemon.json as well
    back = is_at(lab, MTU_1400.pop(lab.name, None))
    if not back:
        ensure_default(lab)
    scripts = stub_docker_service(lab, log)
    try:
        run_ = playbook(lab, "site", podnet_restart_batch=batch, **({} if back else {"podnet_bridge_mtu": 1400}))
        assert "Restart Docker in batches" in run_.stdout
        assert log.exists(), run_.stdout[-5000:]
        lines = [l.split() for l in log.read_text().splitlines()]
        spans = {}
        for host, what, when in lines:
            spans.setdefault(host, {})[what] = float(when)
        assert sorted(spans) == sorted(lab.nodes), lines
        (a, sa), (b, sb) = sorted(spans.items(), key=lambda kv: kv[1]["begin"])
        if batch == 1:
            assert sa["end"] <= sb["begin"], "the second node restarted before the first was done: %s" % lines
        else:
            assert sb["begin"] < sa["end"], "batch 2 restarted one node at a time: %s" % lines
        state = yaml.safe_load((lab.inventory_dir / ".podnet_state.yml").read_text())["nodes"]
        for n in lab.nodes:
            addrs = hosts[n].check_output("ip -o addr show dev cbr0")
            for cidr in state[n]:
                gateway = str(__import__("ipaddress").ip_network(cidr)[1])
                assert gateway in addrs, "%s: the pod gateway %s is not back after the restart" % (n, gateway)
        if not back:
            MTU_1400[lab.name] = states(lab)
    finally:
        for script in scripts:
            script.unlink(missing_ok=True)


LOCK_HOLDER = r"""
import socket, sys, time
lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lock.bind("\0podnet.cluster/node-lock")
print(time.time(), flush=True)
time.sleep(float(sys.argv[1]))
print(time.time(), flush=True)
"""


def test_a_docker_restart_waits_for_the_node_lock(lab: Lab, tmp_path):
    """state=restart holds the node lock like every other change: while another podnet.cluster run holds it (here a
    process holding the lock's abstract socket in the node's namespace), the restart waits."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    log = tmp_path / "restarts.log"
    ensure_default(lab)
    scripts = stub_docker_service(lab, log, [red])
    document = json.loads(hosts[red].file("/etc/podnet/node.json").content_string)["document"]
    holder = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % red, "python3", "-c", LOCK_HOLDER, "4"],
                              stdout=subprocess.PIPE, text=True)
    lab.pids.append(holder.pid)
    try:
        float(holder.stdout.readline())
        proc = run([str(BIN / "ansible"), "-i", str(lab.hosts_yml), red, "-m", "podnet.cluster.node_state",
                    "-a", json.dumps({"state": "restart", "document": document})])
        released = float(holder.stdout.readline())
        holder.wait(timeout=10)
        begin = float(next(l.split()[2] for l in log.read_text().splitlines() if " begin " in l))
        assert begin >= released - 0.05, "the restart began %.2f s before the lock was released" % (released - begin)
        assert "restarted: true" in proc.stdout, proc.stdout
    finally:
        if holder.poll() is None:
            holder.kill()
        for script in scripts:
            script.unlink(missing_ok=True)


def test_a_restart_is_pending_only_where_docker_runs(lab: Lab, tmp_path):
    """A daemon.json change means a restart only on a node whose Docker runs (the first node, with the stand-in
    service; the other has no docker service at all): its summary says so and the handler runs there. The other
    node's Docker reads the file when it starts; its summary lists the file and the handler skips it, without
    asking the node again."""
    red, green = lab.nodes[0], lab.nodes[1]
    ensure_default(lab)
    scripts = stub_docker_service(lab, tmp_path / "restarts.log", [red])
    try:
        proc = playbook(lab, "site", "--check", "--diff", podnet_bridge_mtu=1400)
    finally:
        for script in scripts:
            script.unlink(missing_ok=True)
    summaries = {n: [l for l in proc.stdout.splitlines() if l.startswith("%s: bridge " % n)] for n in (red, green)}
    assert len(summaries[red]) == 1 and "daemon.json keys set" in summaries[red][0] \
        and summaries[red][0].endswith("Docker restart pending"), proc.stdout[-6000:]
    assert len(summaries[green]) == 1 and "daemon.json keys set" in summaries[green][0] \
        and "Docker restart pending" not in summaries[green][0], proc.stdout[-6000:]
    handler = proc.stdout.split("RUNNING HANDLER [podnet.cluster.node : Restart Docker in batches", 1)[1]
    handler = handler.split("\nPLAY RECAP", 1)[0]
    assert "skipping: [%s]" % green in handler, handler
    assert "[%s]" % red in handler and "skipping: [%s]" % red not in handler, handler
    assert not (tmp_path / "restarts.log").exists(), "a --check run restarted Docker"


def test_teardown_restarts_docker_in_batches_when_it_removed_its_bridge_settings(lab: Lab, tmp_path):
    """Teardown takes Docker's bridge settings out of daemon.json: a running Docker is restarted (one node at a
    time with podnet_restart_batch 1), so dockerd does not stay on the deleted bridge; a second teardown
    restarts nothing."""
    log = tmp_path / "restarts.log"
    ensure_default(lab)
    scripts = stub_docker_service(lab, log)
    try:
        proc = playbook(lab, "teardown", podnet_restart_batch=1)
        assert "Restart Docker in batches" in proc.stdout
        assert log.exists(), proc.stdout[-5000:]
        spans = {}
        for host, what, when in (l.split() for l in log.read_text().splitlines()):
            spans.setdefault(host, {})[what] = float(when)
        assert sorted(spans) == sorted(lab.nodes), spans
        (_a, sa), (_b, sb) = sorted(spans.items(), key=lambda kv: kv[1]["begin"])
        assert sa["end"] <= sb["begin"], "two nodes restarted at once: %s" % spans
        for n in lab.nodes:
            daemon = Path(lab.node_root(n), "upper/etc/docker/daemon.json")
            assert not daemon.exists() or "cbr0" not in daemon.read_text()
        log.unlink()
        playbook(lab, "teardown")
        assert not log.exists(), "a teardown with nothing to remove restarted Docker"
    finally:
        for script in scripts:
            script.unlink(missing_ok=True)
