#!/usr/bin/env python3
"""Benchmark of one node's route reconcile: podnet.cluster.routes for 500, 2,000 and 5,000 peers.

Runs the real module through ansible-playbook inside a scratch network namespace (podnet-bench-*, removed
at the end and at the start if an earlier run was killed), peers on-link through a veth. For each size it
prints the wall time of the run that adds every route, of a run that changes nothing, and of the module
itself (its own elapsed time is not reported by Ansible, so the difference to an empty play is shown).
The machine's own network namespace is not touched.

    make bench      (or .venv/bin/python bench/routes_bench.py; needs root)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
NS_A, NS_B = "podnet-bench-a", "podnet-bench-b"


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


def cleanup():
    for ns in (NS_A, NS_B):
        if os.path.exists("/run/netns/" + ns):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def play(tasks):
    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                "vars": {"ansible_python_interpreter": "/usr/bin/python3"}, "tasks": tasks}], handle)
    handle.close()
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    start = time.perf_counter()
    proc = subprocess.run(["ip", "netns", "exec", NS_A, os.path.join(BIN, "ansible-playbook"), "-i", "localhost,",
                           handle.name], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    os.unlink(handle.name)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-2000:])
    return elapsed


def main() -> int:
    if os.geteuid() != 0:
        print("routes benchmark skipped: needs root")
        return 0
    cleanup()
    try:
        sh("ip", "netns", "add", NS_A)
        sh("ip", "netns", "add", NS_B)
        sh("ip", "-n", NS_A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", NS_B)
        sh("ip", "-n", NS_A, "addr", "add", "10.0.0.1/16", "dev", "eth0")
        sh("ip", "-n", NS_A, "link", "set", "eth0", "up")
        empty = play([{"ansible.builtin.meta": "noop"}])
        print("%8s  %10s  %12s  %14s" % ("peers", "add s", "no change s", "(empty play s)"))
        for count in (500, 2000, 5000):
            routes = [{"dst": "10.%d.%d.0/24" % (100 + i // 256, i % 256), "via": "10.0.%d.%d" % (1 + i // 250, i % 250 + 2),
                       "peer": "node%d" % i} for i in range(count)]
            task = {"podnet.cluster.routes": {"routes": routes, "node": "bench", "protocol": 158}}
            add = play([task])
            again = play([task])
            play([{"podnet.cluster.routes": {"routes": [], "node": "bench", "protocol": 158, "state": "absent"}}])
            print("%8d  %10.2f  %12.2f  %14.2f" % (count, add, again, empty))
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
