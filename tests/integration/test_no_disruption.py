# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""No disruption: while a TCP stream (a counter, checked for gaps) and a steady ping flow
between pods on two nodes, a converge that changes nothing, and one that adds a node and changes the bridge MTU
(both at once, each change asserted) lose no packet and break no connection; the bridge is never re-created.

The pods are network namespaces wired by hand (veth into the node's bridge), at the top addresses of each
node's block: outside host-local's range (the lower half), inside Docker's ``fixed-cidr``, where nothing
allocates in the lab (no dockerd runs)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lib.labtools import BIN, Lab, in_ns, new_lab, run
from lib.nodestate import node_changes, playbook

PREFIX = "pnd"
CLUSTERS = ["10.95.64.0/18"]
PORT = 7791

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

SERVER = r"""
import json, socket, sys
addr, port, progress = sys.argv[1], int(sys.argv[2]), sys.argv[3]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(1)
open(progress + ".ready", "w").close()
conn, _ = srv.accept()
expected, gaps, received, ended = 0, [], 0, False
buf = b""
with conn, conn.makefile("rb") as lines:
    for line in lines:
        text = line.strip().decode()
        if text == "END":
            ended = True
            conn.sendall((json.dumps({"received": received, "gaps": gaps}) + "\n").encode())
            break
        n = int(text)
        if n != expected:
            gaps.append([expected, n])
        expected, received = n + 1, received + 1
        if received % 20 == 0:
            with open(progress, "w") as fh:
                fh.write(str(received))
with open(progress + ".result", "w") as fh:
    json.dump({"received": received, "gaps": gaps, "ended": ended}, fh)
"""

CLIENT = r"""
import json, os, socket, sys, time
addr, port, stop, result = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {"sent": 0, "error": None, "reply": None}
try:
    sock = socket.create_connection((addr, port), timeout=30)
    n = 0
    while not os.path.exists(stop):
        sock.sendall(b"%d\n" % n)
        n += 1
        out["sent"] = n
        time.sleep(0.02)
    sock.sendall(b"END\n")
    out["reply"] = json.loads(sock.makefile("rb").readline().decode())
    sock.close()
except Exception as exc:
    out["error"] = repr(exc)
with open(result, "w") as fh:
    json.dump(out, fh)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("nd") / "lab", request, node_names=["left", "right", "late"],
                   lab_vars={"podnet_lab_subnet": "172.29.17.0/24",
                             "podnet_lab_subnet_ipv6": "fd00:29:17::/64",
                             "podnet_lab_external_cidr": "198.18.17.0/24",
                             "podnet_lab_external_cidr_ipv6": "fd00:198:17::/64",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": CLUSTERS,
                                                           "podnet_node_prefix_ipv4": 26,
                                                           "podnet_runtimes": ["docker", "cni"]}})
    spec.build()
    return spec


def _ns(*argv: str) -> str:
    return subprocess.run(["ip"] + list(argv), check=True, capture_output=True, text=True).stdout


def _pod(lab: Lab, node: str, pod: str, cidr: str, request) -> str:
    """A pod namespace on ``node``, veth into cbr0, at the block's last usable address; returns the address."""
    net = ipaddress.ip_network(cidr)
    address = "%s/%d" % (net.broadcast_address - 1, net.prefixlen)
    gateway = str(net.network_address + 1)
    subprocess.run(["ip", "netns", "delete", pod], capture_output=True, check=False)
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "delete", pod], capture_output=True, check=False))
    _ns("netns", "add", pod)
    _ns("-n", node, "link", "add", "ndv0", "type", "veth", "peer", "name", "eth0", "netns", pod)
    _ns("-n", node, "link", "set", "ndv0", "master", "cbr0", "up")
    _ns("-n", pod, "link", "set", "lo", "up")
    _ns("-n", pod, "addr", "add", address, "dev", "eth0")
    _ns("-n", pod, "link", "set", "eth0", "up")
    _ns("-n", pod, "route", "add", "default", "via", gateway)
    return address.split("/")[0]


def _bridge(node: str) -> dict:
    link = json.loads(_ns("-n", node, "-json", "link", "show", "cbr0"))[0]
    return {"ifindex": link["ifindex"], "mtu": link["mtu"]}


def _port_master(node: str) -> str:
    return json.loads(_ns("-n", node, "-json", "link", "show", "ndv0"))[0].get("master", "")


def _wait_for(what: str, predicate, limit: float = 60.0):
    """Poll until ``predicate()``; a liveness check (the stream still flows), not a timing assertion."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("%s: nothing after %d s" % (what, limit))
        time.sleep(0.2)


def test_traffic_survives_converges(lab: Lab, tmp_path, request):
    left, right, late = lab.nodes
    state_path = lab.inventory_dir / ".podnet_state.yml"
    two = lab.inventory("two", drop=[late])
    site_two = [str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(two)]
    run(site_two)
    blocks = yaml.safe_load(state_path.read_text())["nodes"]

    pod_a, pod_b = "%s-pa" % lab.name, "%s-pb" % lab.name
    addr_a = _pod(lab, left, pod_a, blocks[left][0], request)
    addr_b = _pod(lab, right, pod_b, blocks[right][0], request)
    assert in_ns(pod_a, "ping", "-c", "1", "-W", "2", addr_b).returncode == 0, "the pods cannot reach each other"

    procs = []

    def stop_all():
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    request.addfinalizer(stop_all)
    progress, stop, result = tmp_path / "progress", tmp_path / "stop", tmp_path / "client.json"
    ping_out = tmp_path / "ping.txt"
    procs.append(subprocess.Popen(["ip", "netns", "exec", pod_b, "/usr/bin/python3", "-c", SERVER, addr_b, str(PORT),
                                   str(progress)], stdin=subprocess.DEVNULL))
    _wait_for("the stream server", lambda: Path(str(progress) + ".ready").exists())
    client = subprocess.Popen(["ip", "netns", "exec", pod_a, "/usr/bin/python3", "-c", CLIENT, addr_b, str(PORT),
                               str(stop), str(result)], stdin=subprocess.DEVNULL)
    procs.append(client)
    with open(ping_out, "w") as fh:
        pinger = subprocess.Popen(["ip", "netns", "exec", pod_a, "ping", "-n", "-O", "-i", "0.05", addr_b],
                                  stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    procs.append(pinger)

    def received() -> int:
        try:
            return int(progress.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def replies() -> int:
        return len(re.findall(r"icmp_seq=\d+ ttl=", ping_out.read_text()))

    def still_flowing(what: str):
        r, p = received(), replies()
        _wait_for("%s: the TCP stream" % what, lambda: received() >= r + 40)
        _wait_for("%s: the ping" % what, lambda: replies() >= p + 20)

    still_flowing("before any converge")
    bridges = {n: _bridge(n) for n in (left, right)}

    same = run(site_two)
    assert node_changes(same.stdout) == [], same.stdout[-3000:]
    still_flowing("after a converge that changes nothing")

    # One converge with two changes, each asserted: it adds a node (the late one is configured, and the others
    # route to it) and it changes the bridge MTU of every node; the stream and the ping flow through both.
    mtu = bridges[left]["mtu"] - 80
    moved = playbook(lab, "site", podnet_state_file=str(state_path), podnet_bridge_mtu=mtu)
    changes = node_changes(moved.stdout)
    assert late in changes and left in changes, "adds a node:\n" + moved.stdout[-3000:]
    late_blocks = yaml.safe_load(state_path.read_text())["nodes"].get(late)
    assert late_blocks, "adds a node: no block for %s" % late
    for n in (left, right):
        routed = {r["dst"] for r in json.loads(_ns("-n", n, "-json", "route", "show", "proto", "158"))}
        assert late_blocks[0] in routed, "adds a node: %s has no route to %s's block: %s" % (n, late, routed)
    assert set(changes) == set(lab.nodes), "changes the MTU:\n" + moved.stdout[-3000:]
    assert all(_bridge(n)["mtu"] == mtu for n in (left, right)), "changes the MTU"
    still_flowing("after a converge that adds a node and changes the MTU")

    # The bridge was never re-created and our pods' ports stayed on it.
    for n in (left, right):
        assert _bridge(n)["ifindex"] == bridges[n]["ifindex"], "%s: cbr0 was re-created" % n
        assert _port_master(n) == "cbr0"

    stop.touch()
    client.wait(timeout=60)
    pinger.send_signal(signal.SIGINT)
    pinger.wait(timeout=30)
    out = json.loads(result.read_text())
    assert out["error"] is None, "the TCP connection broke: %s" % out
    assert out["reply"] == {"received": out["sent"], "gaps": []}, out
    assert out["sent"] > 100
    text = ping_out.read_text()
    seqs = sorted(int(s) for s in re.findall(r"icmp_seq=(\d+) ttl=", text))
    assert seqs and seqs[0] == 1
    missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
    assert missing == [], "ping lost icmp_seq %s\n%s" % (missing[:50], text[-2000:])
    assert len(seqs) > 100
    print("TCP counter: %d sent, %d received, no gap; ping: %d replies, none missing"
          % (out["sent"], out["reply"]["received"], len(seqs)))
