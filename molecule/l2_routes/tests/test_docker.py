# SPDX-License-Identifier: Apache-2.0
"""A real dockerd inside lab node 1, configured only by the daemon.json that site wrote.

A container it starts gets its address from the node's Docker half of the pod subnet on cbr0 and
reaches a pod on node 2, which sees the container's own address (no NAT).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from ansible_collections.podnet.lab.plugins.module_utils import netns

DOCKER = "/usr/bin/docker"  # /usr/local/bin/docker on this kind of machine is an unrelated CLI
PORT = 47399
POD_NS = "podnet-mol-dockerpod"
SERVER = r"""
import socket, sys
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(8)
print("listening", flush=True)
while True:
    conn, peer = srv.accept()
    conn.recv(100)
    conn.sendall(("seen %s\n" % peer[0]).encode())
    conn.close()
"""

pytestmark = pytest.mark.skipif(shutil.which("dockerd") is None, reason="Debian docker.io is not installed")


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, check=kw.pop("check", True), **kw)


def remove_netns(name):
    if os.path.exists("/run/netns/%s" % name):
        run("ip", "netns", "del", name, check=False)


@pytest.fixture
def dockerd(node_vars):
    """dockerd in node 1's namespace and file view, started by PID, stopped by PID, its leftovers removed."""
    node = sorted(node_vars)[0]
    root = node_vars[node]["podnet_netns_root"]
    work = os.path.join(root, "dockerd")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sock = os.path.join(work, "docker.sock")
    command = ("mount -t tmpfs tmpfs /opt && exec dockerd --config-file /etc/docker/daemon.json "
               "--data-root {w}/data --exec-root {w}/x --pidfile {w}/docker.pid -H unix://{s} "
               "--cgroup-parent /{n}".format(w=work, s=sock, n=node))
    # The node's /etc, /var/lib and /run; the machine's /sys, since dockerd needs the cgroup mounts.
    argv = netns.build_argv(node_vars[node].get("podnet_netns", node), command, root=root, hostname=node,
                            remount_sys=False)
    log = open(os.path.join(work, "dockerd.log"), "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail("dockerd exited (%s):\n%s" % (proc.returncode, Path(work, "dockerd.log").read_text()))
            if os.path.exists(sock) and run(DOCKER, "-H", "unix://" + sock, "info", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail("dockerd did not answer in 60 s:\n" + Path(work, "dockerd.log").read_text())
            time.sleep(0.2)
        yield {"node": node, "sock": sock, "log": os.path.join(work, "dockerd.log")}
    finally:
        if os.path.exists(sock):
            ids = run(DOCKER, "-H", "unix://" + sock, "ps", "-aq", check=False).stdout.split()
            if ids:
                run(DOCKER, "-H", "unix://" + sock, "rm", "-f", *ids, check=False)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        for controller in Path("/sys/fs/cgroup").iterdir():
            group = controller / node
            if group.is_dir():
                for sub in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if sub.is_dir():
                        os.rmdir(sub)
                os.rmdir(group)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def pod_on_node2(node_vars, state):
    """A pod on node 2: a namespace with a veth in cbr0, an address of node 2's subnet, a TCP server."""
    node = sorted(node_vars)[1]
    block = ipaddress.ip_network(state["nodes"][node][0])
    address, gateway = str(block[10]), str(block[1])
    remove_netns(POD_NS)
    run("ip", "netns", "add", POD_NS)
    server = None
    try:
        run("ip", "-n", node, "link", "add", "vdock0", "type", "veth", "peer", "name", "eth0", "netns", POD_NS)
        run("ip", "-n", node, "link", "set", "vdock0", "master", "cbr0", "up")
        run("ip", "-n", POD_NS, "addr", "add", "%s/%d" % (address, block.prefixlen), "dev", "eth0")
        run("ip", "-n", POD_NS, "link", "set", "eth0", "up")
        run("ip", "-n", POD_NS, "link", "set", "lo", "up")
        run("ip", "-n", POD_NS, "route", "add", "default", "via", gateway)
        server = subprocess.Popen(["ip", "netns", "exec", POD_NS, sys.executable, "-c", SERVER, str(PORT)],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        yield address
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        remove_netns(POD_NS)


def busybox_image(sock):
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp, "rootfs")
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
        for applet in ("sh", "ip", "nc", "echo", "cat", "sleep"):
            os.symlink("busybox", rootfs / "bin" / applet)
        tarball = Path(tmp, "rootfs.tar")
        with tarfile.open(tarball, "w") as tar:
            tar.add(rootfs, arcname=".")
        with open(tarball, "rb") as fh:
            subprocess.run([DOCKER, "-H", "unix://" + sock, "import", "-", "podnet-probe:1"], stdin=fh,
                           check=True, capture_output=True)
    return "podnet-probe:1"


def test_container_on_cbr0_reaches_a_pod_on_another_node_without_nat(dockerd, pod_on_node2, nodes, state):
    node = dockerd["node"]
    daemon = json.loads(nodes[node].file("/etc/docker/daemon.json").content_string)
    image = busybox_image(dockerd["sock"])
    script = "ip -4 -o addr show eth0; ip route; echo hello | nc -w 5 %s %d" % (pod_on_node2, PORT)
    out = run(DOCKER, "-H", "unix://" + dockerd["sock"], "run", "--rm", image, "sh", "-c", script).stdout
    inet = [l.split() for l in out.splitlines() if " inet " in l][0]
    container_ip = ipaddress.ip_interface(inet[inet.index("inet") + 1]).ip
    assert container_ip in ipaddress.ip_network(daemon["fixed-cidr"]), out
    assert container_ip in ipaddress.ip_network(state["nodes"][node][0])
    gateway = str(ipaddress.ip_network(state["nodes"][node][0])[1])
    assert "default via %s dev eth0" % gateway in out, out
    assert "seen %s" % container_ip in out, out
