# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Lab helpers of the uplink move (fabric l2_bridge): the exact kernel state of a namespace, and a TCP stream
held open across a change (a counter echoed back, so a lost, duplicated or reordered byte shows)."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from lib.labtools import in_ns

ECHO_SERVER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
while True:
    data = conn.recv(65536)
    if not data:
        break
    conn.sendall(data)
"""

COUNTER_CLIENT = r"""
import json, os, select, socket, sys, time
host, port, stop, progress, result = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
sock = socket.create_connection((host, port), timeout=5)
sock.setblocking(False)
sent, buf, got, error = 0, b"", [], None
last_note = 0.0
def drain(wait):
    global buf
    ready, _, _ = select.select([sock], [], [], wait)
    if ready:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the node")
        buf += data
        *lines, buf = buf.split(b"\n")
        got.extend(int(x) for x in lines)
try:
    while not os.path.exists(stop):
        sock.sendall(b"%d\n" % sent)
        sent += 1
        drain(0.002)
        if time.monotonic() - last_note > 0.05:
            with open(progress + ".tmp", "w") as fh:
                fh.write(str(len(got)))
            os.replace(progress + ".tmp", progress)
            last_note = time.monotonic()
    deadline = time.monotonic() + 20
    while len(got) < sent and time.monotonic() < deadline:
        drain(0.1)
except Exception as exc:
    error = "%s: %s" % (type(exc).__name__, exc)
with open(result, "w") as fh:
    json.dump({"sent": sent, "received": len(got), "in_order": got == list(range(len(got))), "error": error}, fh)
"""


class TcpStream:
    """A counter streamed from ``client_ns`` to an echo server at ``address``:``port`` in ``server_ns``.

    ``start()`` connects; ``wait_for(n)`` waits until n numbers came back; ``finish()`` stops the client and
    returns its outcome (sent, received, in_order, error). The PIDs are appended to ``pids`` (killed by the
    lab's finalizer if the test dies first).
    """

    def __init__(self, server_ns: str, client_ns: str, address: str, port: int, tmp: Path, pids: List[int]):
        self.server_ns, self.client_ns, self.address, self.port = server_ns, client_ns, address, port
        self.stop, self.progress, self.result = tmp / "stop", tmp / "progress", tmp / "result.json"
        self.pids = pids
        self.server: Optional[subprocess.Popen] = None
        self.client: Optional[subprocess.Popen] = None

    def start(self) -> "TcpStream":
        self.server = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % self.server_ns, "--", sys.executable, "-c",
                                        ECHO_SERVER, self.address, str(self.port)], stdout=subprocess.PIPE, text=True,
                                       start_new_session=True)
        self.pids.append(self.server.pid)
        assert self.server.stdout.readline().strip() == "listening"
        self.client = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % self.client_ns, "--", sys.executable, "-c",
                                        COUNTER_CLIENT, self.address, str(self.port), str(self.stop),
                                        str(self.progress), str(self.result)], start_new_session=True)
        self.pids.append(self.client.pid)
        return self

    def received(self) -> int:
        try:
            return int(self.progress.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < count and self.client.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.received() >= count, "the stream stalled at %d (client rc %s)" % (self.received(),
                                                                                      self.client.poll())

    def finish(self) -> Dict[str, Any]:
        self.stop.write_text("stop")
        self.client.wait(timeout=60)
        self.server.wait(timeout=30)
        return json.loads(self.result.read_text())


# What the kernel derives by itself, not configuration: the queueing discipline it attaches when a
# link first goes up, a bridge's identifiers (from its ports' and its own address) and its running
# timers, and offload limits inherited from ports.
DERIVED = {"qdisc", "tso_max_size", "tso_max_segs", "gso_max_size", "gso_max_segs", "gro_max_size",
           "gso_ipv4_max_size", "gro_ipv4_max_size"}
DERIVED_BRIDGE = {"bridge_id", "root_id", "hello_timer", "tcn_timer", "topology_change_timer", "gc_timer"}


def kernel_state(ns: str) -> Dict[str, Any]:
    """Everything `ip` says about links, addresses and routes (every table) and rules of a namespace,
    exactly, but for the attributes in DERIVED."""
    state = {}
    for key, args in (("links", ["-d", "link", "show"]), ("addresses", ["addr", "show"]),
                      ("routes4", ["-d", "-4", "route", "show", "table", "all"]),
                      ("routes6", ["-d", "-6", "route", "show", "table", "all"]),
                      ("rules", ["rule", "show"])):
        proc = in_ns(ns, "ip", "-N", "-json", *args)
        assert proc.returncode == 0, proc.stderr
        state[key] = json.loads(proc.stdout or "[]")
    for entry in state["links"] + state["addresses"]:
        for name in DERIVED & set(entry):
            del entry[name]
        data = (entry.get("linkinfo") or {}).get("info_data") or {}
        for name in DERIVED_BRIDGE & set(data):
            del data[name]
    return state


def same_state(a: Dict[str, Any], b: Dict[str, Any]) -> str:
    """'' when the two kernel states are equal, else a unified diff of their JSON (for the assertion message)."""
    if a == b:
        return ""
    dump = [json.dumps(x, indent=1, sort_keys=True).splitlines() for x in (a, b)]
    return "\n".join(difflib.unified_diff(dump[0], dump[1], "expected", "now", lineterm="", n=4))


def link(ns: str, name: str) -> Dict[str, Any]:
    proc = in_ns(ns, "ip", "-json", "-d", "link", "show", "dev", name)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else {}
