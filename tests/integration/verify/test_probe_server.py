# SPDX-License-Identifier: Apache-2.0
"""The probe server itself (the script module_utils/probe.own_source packs, as probe_pod writes it to a node), in a
scratch network namespace:
it listens only on the addresses it is given, never runs more handler threads than its cap, and exits on its
own when its lifetime is over (so an interrupted verify run leaves no server behind for long).

The namespace ``podnet-v-<pytest pid>-srv`` has two IPv4 and two IPv6 addresses on lo; the
server is told to bind one of each. Everything runs inside the namespace (a driver script under
``ip netns exec``); the namespace is deleted by name at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from verify_lab_lib import OLDEST_PYTHON, PREFIX, sh

from ansible_collections.podnet.cluster.plugins.module_utils import probe as probe_lib

PORT = 47399

DRIVER = textwrap.dedent(r"""
    import json, os, socket, subprocess, sys, time

    script, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = {}

    def start(*extra):
        rfd, wfd = os.pipe()
        proc = subprocess.Popen([sys.executable, script, "serve", "--name", "t-srv", "--port", str(port),
                                 "--ready-fd", str(wfd)] + list(extra), pass_fds=(wfd,),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as ready:
            line = ready.readline().decode()
        return proc, (json.loads(line) if line.strip() else None)

    def probe(addr):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(3)
        try:
            sock.connect((addr, port))
            sock.sendall(b'{"v": 1, "id": "x"}\n')
            data = sock.makefile("rb").readline()
            return json.loads(data)["name"] if data else "no answer"
        except OSError as exc:
            return "error: %s" % (exc.strerror or exc)
        finally:
            sock.close()

    def threads(pid):
        with open("/proc/%d/status" % pid) as fh:
            return int(next(l for l in fh if l.startswith("Threads:")).split()[1])

    if mode == "bind":
        proc, ready = start("--bind", "10.250.0.1", "--bind", "fd00:250::1", "--lifetime", "60",
                            "--max-threads", "4")
        out["ready"] = ready
        if ready and ready.get("ready"):
            out["answers"] = {a: probe(a) for a in ("10.250.0.1", "10.250.0.2", "127.0.0.1",
                                                     "fd00:250::1", "fd00:250::2", "::1")}
            idle = []
            for _ in range(12):  # connections that never send a request: each holds a handler
                s = socket.socket()
                s.connect(("10.250.0.1", port))
                idle.append(s)
            peak = 0
            for _ in range(20):
                peak = max(peak, threads(proc.pid))
                time.sleep(0.05)
            out["peak_threads"] = peak
            for s in idle:
                s.close()
            out["after_idle"] = probe("10.250.0.1")
        proc.terminate()
        out["rc"] = proc.wait(timeout=10)
    else:  # lifetime
        proc, ready = start("--bind", "10.250.0.1", "--lifetime", "1")
        out["ready"] = ready
        try:
            out["rc"] = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out["rc"] = "still running 30 s after a lifetime of 1 s"
        out["stderr"] = proc.stderr.read().decode()[-500:]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def scratch_ns():
    name = "%s%d-srv" % (PREFIX, os.getpid())
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        for cidr in ("10.250.0.1/24", "10.250.0.2/24"):
            sh("ip", "-n", name, "addr", "add", cidr, "dev", "lo")
        for cidr in ("fd00:250::1/64", "fd00:250::2/64"):
            sh("ip", "-n", name, "addr", "add", cidr, "dev", "lo", "nodad")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


PYTHONS = [pytest.param(sys.executable, id="python%d.%d" % sys.version_info[:2]),
           pytest.param(OLDEST_PYTHON, id="python3.8", marks=pytest.mark.skipif(
               OLDEST_PYTHON is None, reason="no Python 3.8 on this machine (the oldest target Python claimed)"))]


def drive(ns, mode, python=sys.executable):
    with tempfile.TemporaryDirectory() as where:
        script = Path(where) / probe_lib.SCRIPT_NAME
        script.write_text(probe_lib.own_source())
        proc = subprocess.run(["ip", "netns", "exec", ns, python, "-c", DRIVER, str(script), str(PORT), mode],
                              capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("python", PYTHONS)
def test_server_listens_only_on_its_addresses_with_capped_threads(scratch_ns, python):
    out = drive(scratch_ns, "bind", python)
    assert out["ready"] and out["ready"].get("ready"), out
    assert sorted(out["ready"]["listening"]) == ["10.250.0.1:%d" % PORT, "[fd00:250::1]:%d" % PORT]
    answers = out["answers"]
    assert answers["10.250.0.1"] == "t-srv" and answers["fd00:250::1"] == "t-srv", answers
    for other in ("10.250.0.2", "127.0.0.1", "fd00:250::2", "::1"):
        assert "refused" in answers[other], answers
    # 12 idle connections, a cap of 4 handlers: the main thread plus at most 4
    assert 1 < out["peak_threads"] <= 5, out
    assert out["after_idle"] == "t-srv"
    assert out["rc"] == 0


@pytest.mark.parametrize("python", PYTHONS)
def test_server_exits_when_its_lifetime_is_over(scratch_ns, python):
    out = drive(scratch_ns, "lifetime", python)
    assert out["ready"] and out["ready"].get("ready"), out
    assert out["rc"] == 0, out
    assert "lifetime" in out["stderr"], out
