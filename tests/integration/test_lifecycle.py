# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Lifecycle on a lab built unlike the defaults (named nodes, dual stack, /26 blocks, both runtimes):
boot restore from the record, teardown back to the state before the first converge, the state file lost,
and what an operator or another tool left on a node. The setting changes are test_lifecycle_settings.py
and test_lifecycle_runtimes.py (Docker restarts too), each on a lab of its own.

The tests are ordered so that each starts where the one before ended (each still sets itself up when run alone):
one first converge (red alone, then both) of nodes that hold what an operator and other tools left there
(``operated``); the lost state file, the boot restores (before any pod ran on the bridge: a bridge that had ports
shows no carrier, a restored one does), verify, the interpreter on the converged lab; one teardown back to the
state before the first converge at the end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Set

import pytest
import yaml

from lib.labtools import BIN, Lab, recap, run
from lib.lifecycle import boot_lines, build_lab, gateways, kernel_of, wipe
from lib.nodestate import (assert_same, node_changes, node_state, playbook, pristine_states, record_path, torn_down,
                           unchanged)
from lib.netns_backend import lab_hosts

PREFIX = "plc"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    return build_lab(PREFIX, tmp_path_factory, request)


@pytest.fixture(scope="module")
def pristine(lab: Lab) -> Dict[str, Dict[str, str]]:
    """Every node as the lab built it."""
    return pristine_states(lab)


# What an operator and other tools left on the nodes before podnet.cluster came, by case (each asserted, and named
# in its messages, by test_the_first_converge_keeps_what_was_there and test_teardown_returns_every_node_to_its_state_
# before_the_first_converge): one converge and one teardown for all of them, as they are on nodes or things apart.
#   red, "foreign state": a foreign route, a foreign rule, a daemon.json of its own (mode 0600);
#   green, "daemon.json symlink": daemon.json a link to a managed file (mode 0640) in a directory of its own;
#   green, "foreign proto-158 route": a route with podnet.cluster's protocol number that another tool made;
#   green, "RA default route": an IPv6 default route learned from router advertisements (accept_ra=1 on eth0).
FOREIGN_158 = "192.168.77.0/24 via 172.26.9.1 dev eth0 proto 158"
RA_ROUTE = "default via fe80::1 dev eth0 proto ra metric 2048"
SYMLINK_DIRS = ("/etc/podnet", "/etc/cni", "/etc/cni/net.d", "/var/lib/podnet", "/etc/systemd/system",
                "/etc/systemd/system/docker.service.d", "/etc/docker")


@dataclass
class Operated:
    before: Dict[str, Dict[str, str]]       # every node before the first converge, with what was there
    red_first: subprocess.CompletedProcess   # the first converge, red alone (red joins first)
    first: subprocess.CompletedProcess       # the first converge of both nodes (green's first)
    existed: Set[str]                       # directories green had before (daemon.json symlink case)
    created: List[str]                      # directories green's record says the converge created
    accept_ra: Dict[str, str]               # eth0's accept_ra of each node before (RA default route case)


def converge_red_first(lab: Lab):
    """The first converge as a cluster grows: red alone (it takes the first blocks), then both. A fresh plan would
    order them by name (green first)."""
    red, green = lab.nodes
    only_red = lab.inventory("red", drop=[green])
    try:
        red_first = run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(only_red)])
    finally:
        only_red.unlink()
    return red_first, playbook(lab, "site")


@pytest.fixture(scope="module")
def operated(lab: Lab, pristine) -> Operated:
    """The lab with what an operator and other tools left on its nodes (the cases above), converged red first."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red, green = lab.nodes
    torn_down(lab, pristine)
    hosts[red].check_output("ip route add 192.168.99.0/24 via 172.26.9.1 proto static")
    hosts[red].check_output("iptables -A FORWARD -s 198.51.100.7/32 -j DROP")
    hosts[red].check_output("mkdir -p /etc/docker && printf '{\\n  \"log-level\": \"warn\"\\n}\\n' > "
                            "/etc/docker/daemon.json && chmod 600 /etc/docker/daemon.json")
    hosts[green].check_output("rm -rf /etc/docker && mkdir -p /etc/docker /etc/docker-managed && printf "
                              "'{\\n  \"log-level\": \"warn\"\\n}\\n' > /etc/docker-managed/daemon.json && "
                              "chmod 640 /etc/docker-managed/daemon.json && "
                              "ln -s ../docker-managed/daemon.json /etc/docker/daemon.json")
    existed = {d for d in SYMLINK_DIRS if hosts[green].file(d).is_directory}
    hosts[green].check_output("ip route add %s" % FOREIGN_158)
    hosts[green].check_output("ip -6 route add %s" % RA_ROUTE)
    accept_ra = {n: hosts[n].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() for n in lab.nodes}
    before = {n: node_state(lab, n) for n in lab.nodes}
    red_first, first = converge_red_first(lab)
    created = json.loads(hosts[green].file("/etc/podnet/node.json").content_string)["pristine"]["created_dirs"]
    return Operated(before, red_first, first, existed, created, accept_ra)


def remove_what_was_there(lab: Lab) -> None:
    """Take away what ``operated`` put on the nodes (the lab torn down): files from the nodes' upper layers (the
    lab as built has no /etc/docker of its own there), routes and the rule through the nodes."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red, green = lab.nodes
    hosts[red].run("ip route del 192.168.99.0/24 via 172.26.9.1")
    hosts[red].run("iptables -D FORWARD -s 198.51.100.7/32 -j DROP")
    hosts[green].run("ip route del %s" % FOREIGN_158)
    hosts[green].run("ip -6 route del %s" % RA_ROUTE)
    for node in lab.nodes:
        for rel in ("etc/docker", "etc/docker-managed"):
            shutil.rmtree(Path(lab.node_root(node), "upper", rel), ignore_errors=True)


def restores_to_itself(lab: Lab, host, node: str) -> bool:
    """The node holds its record and its boot units, the state file is there, and the boot unit's restore finds
    nothing to do: the node's kernel state is the one its record restores."""
    units = Path(lab.node_root(node), "upper/etc/systemd/system")
    if not ((lab.inventory_dir / ".podnet_state.yml").is_file()
            and record_path(lab, node).is_file()
            and (units / "podnet-cluster.service").is_file()
            and (units / "docker.service.d" / "10-podnet-cluster.conf").is_file()):
        return False
    (exec_start, _ignored), _post = boot_lines(lab, node)
    again = host.run(exec_start)
    return again.rc == 0 and "nothing to do" in again.stdout


def converged(lab: Lab, hosts, nodes=None) -> None:
    """A converge only where a node is not as its record says: the tests are ordered so that each finds the lab
    converged by the one before (run alone, one converges here)."""
    if not all(restores_to_itself(lab, hosts[n], n) for n in nodes or lab.nodes):
        playbook(lab, "site")


def test_the_first_converge_keeps_what_was_there(lab: Lab, operated: Operated):
    hosts = lab_hosts(str(lab.hosts_yml))
    red, green = lab.nodes
    daemon = json.loads(hosts[red].file("/etc/docker/daemon.json").content_string)
    assert daemon["log-level"] == "warn" and daemon["bridge"] == "cbr0" and daemon["iptables"] is False
    assert hosts[red].file("/etc/docker/daemon.json").mode == 0o600
    unit = Path(lab.node_root(red), "upper/etc/systemd/system/podnet-cluster.service")
    text = unit.read_text()
    for needle in ("Type=oneshot", "RemainAfterExit=yes", "After=network-online.target",
                   "Before=docker.service containerd.service crio.service kubelet.service"):
        assert needle in text
    # systemd accepts the units (the drop-in next to a stand-in docker.service).
    check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    dropin = (unit.parent / "docker.service.d" / "10-podnet-cluster.conf").read_text()
    assert "ExecStartPost=" in dropin

    # daemon.json symlink: the converge writes the target and keeps the link (and the target's mode); the record
    # lists as created only directories that were not there before
    link = hosts[green].file("/etc/docker/daemon.json")
    assert link.is_symlink and link.linked_to == "/etc/docker-managed/daemon.json", "daemon.json symlink: not kept"
    managed = hosts[green].file("/etc/docker-managed/daemon.json")
    data = json.loads(managed.content_string)
    assert data["log-level"] == "warn" and data["bridge"] == "cbr0" and managed.mode == 0o640, \
        "daemon.json symlink: the target %s (mode %o)" % (data, managed.mode)
    assert operated.created and not set(operated.created) & operated.existed, \
        ("daemon.json symlink", operated.created, operated.existed)
    assert all(hosts[green].file(d).is_directory for d in operated.created), "daemon.json symlink"

    # foreign proto-158 route: green's first converge warns, naming it and podnet_route_protocol; it stays
    said = operated.first.stdout + operated.first.stderr      # warnings go to stderr
    assert "192.168.77.0/24" in said and "podnet_route_protocol" in said, \
        "foreign proto-158 route: no warning\n%s" % said[-4000:]
    assert "192.168.77.0/24 via 172.26.9.1" in hosts[green].check_output("ip route show proto 158"), \
        "foreign proto-158 route: removed by the converge"

    # RA default route: its uplink gets accept_ra=2 (IPv6 forwarding would make the kernel ignore the RAs),
    # persisted with the forwarding settings; not on a node without one
    assert operated.accept_ra[green] != "2", "RA default route: accept_ra was 2 before the converge"
    assert hosts[green].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() == "2", \
        "RA default route: accept_ra of eth0"
    assert "net/ipv6/conf/eth0/accept_ra = 2" in hosts[green].file("/etc/sysctl.d/90-podnet-cluster.conf") \
        .content_string, "RA default route: not persisted"
    assert hosts[red].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() != "2", \
        "RA default route: accept_ra=2 on a node without one"

    # a second converge changes nothing (daemon.json symlink, foreign proto-158 route)
    again = playbook(lab, "site")
    assert unchanged(again), "a second converge changed something:\n%s" % again.stdout[-3000:]


def test_lost_state_file_is_rebuilt_from_the_nodes_and_nothing_moves(lab: Lab, operated: Operated):
    red, green = lab.nodes
    hosts = lab_hosts(str(lab.hosts_yml))
    state_path = lab.inventory_dir / ".podnet_state.yml"
    # red joined first and took the first blocks (``operated``: red alone, then both); green came later. A fresh
    # plan would order them by name (green first): only adoption keeps each node on what it holds. The lab is
    # converged so by the tests before (run alone, by ``operated``); a lab that is not converges so again here.
    if not all(restores_to_itself(lab, hosts[n], n) for n in lab.nodes):
        converge_red_first(lab)
    first = yaml.safe_load(state_path.read_text())["nodes"]
    assert first[red][0].startswith("10.77.0.0/"), first
    converged = {n: node_state(lab, n) for n in lab.nodes}

    state_path.unlink()
    check = playbook(lab, "site", "--check")
    assert "Pod network of this node" in check.stdout and node_changes(check.stdout) == [], check.stdout[-3000:]
    assert not state_path.exists()
    again = playbook(lab, "site")
    assert "Pod network of this node" in again.stdout and node_changes(again.stdout) == [], again.stdout[-3000:]
    assert yaml.safe_load(state_path.read_text())["nodes"] == first
    for n in lab.nodes:
        assert_same(converged[n], node_state(lab, n), "adopting %s changed it" % n)
    adopted = state_path.read_text()

    # A lost state file and an inventory that gives red's block to green: refused before any change.
    state_path.unlink()
    try:
        other = lab.inventory("steal", host_vars={green: {"podnet_pod_cidrs": first[red]}},
                              state_file=state_path.name)
        proc = run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(other)], check=False)
        other.unlink()
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert red in out and green in out and first[red][0] in out and "podnet_allow_readdress" in out, out[-3000:]
        assert not state_path.exists()
        for n in lab.nodes:
            assert_same(converged[n], node_state(lab, n), "a refused plan changed %s" % n)
    finally:
        # the state file as the adopting run wrote it: the tests after this one find the lab converged with it
        state_path.write_text(adopted)


def test_boot_with_a_sysctl_file_that_turns_forwarding_off(lab: Lab):
    """A sysctl.d file read after ours sets forwarding off (systemd-sysctl applied it at boot): the unit's own
    ExecStart brings back the bridge, its gateways, forwarding, chains and routes, and says what overrides it
    (journal, exit status); the Docker drop-in's line cannot fail docker.service."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    converged(lab, hosts, [red])
    before = node_state(lab, red)
    (exec_start, start_ignored), (exec_post, post_ignored) = boot_lines(lab, red)
    operator = "/etc/sysctl.d/99-zz-operator.conf"
    hosts[red].check_output("printf 'net.ipv4.ip_forward = 0\\n' > %s && sysctl -q -p %s" % (operator, operator))
    try:
        wipe(hosts[red])
        restored = hosts[red].run(exec_start)
        assert restored.rc == 1, "the override must show in the unit's exit status: %s" % restored.stderr
        assert operator in restored.stderr and "net.ipv4.ip_forward" in restored.stderr, restored.stderr
        addrs = hosts[red].check_output("ip -o addr show dev cbr0")
        for gateway in gateways(lab, red):
            assert gateway in addrs, "%s: the gateway %s is not back: %s" % (red, gateway, restored.stderr)
        assert hosts[red].file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"
        assert_same(kernel_of(before), kernel_of(node_state(lab, red)), "the restore did not bring the node back")
        assert not start_ignored and post_ignored, "the drop-in's ExecStartPost must start with '-'"
        # dockerd strips the IPv6 gateways; the drop-in puts them back and, whatever it meets, Docker starts
        hosts[red].check_output("for a in $(ip -6 -o addr show dev cbr0 scope global | awk '{print $4}'); do "
                                "ip addr del $a dev cbr0; done")
        post = hosts[red].run(exec_post)
        assert post.rc == 1 and operator in post.stderr and post_ignored
        assert_same(kernel_of(before), kernel_of(node_state(lab, red)), "the drop-in did not put the gateways back")
    finally:
        hosts[red].run("rm -f %s" % operator)
    again = hosts[red].run(exec_start)
    assert again.rc == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


def test_boot_when_the_node_address_comes_after_the_restore_starts(lab: Lab):
    """The node IP (from which the bridge takes its MTU, and through which the peers are on-link) is not on
    eth0 when the restore starts: the bridge and its gateways come first, the routes once the address is there."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    # The case compares red after the restore with red before the wipe: a red that were not as its record says
    # would fail that comparison anyway.
    converged(lab, hosts, [red])
    before = node_state(lab, red)
    (exec_start, _ignored), _post = boot_lines(lab, red)
    wipe(hosts[red])
    # the IPv4 routes through eth0 go with its address; the node's network configuration puts them back with it
    underlay = [line for line in hosts[red].check_output("ip -4 route show dev eth0").splitlines()
                if "proto kernel" not in line and "proto 158" not in line]
    hosts[red].check_output("ip addr del 172.26.9.11/24 dev eth0")
    comes_back = "ip addr add 172.26.9.11/24 dev eth0" + "".join(
        " && ip route replace %s dev eth0" % line.strip() for line in underlay)
    argv = hosts[red].backend.argv(exec_start)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while "cbr0" not in hosts[red].check_output("ip -o link") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        addrs = hosts[red].check_output("ip -o addr show dev cbr0")
        assert all(g in addrs for g in gateways(lab, red)), addrs
        assert proc.poll() is None, "the restore gave up at once: %s" % (proc.communicate(),)
        hosts[red].check_output(comes_back)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "172.26.9.11/" not in hosts[red].check_output("ip -o addr show dev eth0"):
            hosts[red].run(comes_back)
    assert proc.returncode == 0, out + err
    assert "retrying routes" in err, err
    assert_same(before, node_state(lab, red), "the restore did not bring the node back")


def test_a_reboot_restores_the_node_from_its_record(lab: Lab, operated: Operated):
    """A reboot: the node back to its underlay only, then the unit's ExecStart exactly as written."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    converged(lab, hosts, [red])
    before = node_state(lab, red)
    text = Path(lab.node_root(red), "upper/etc/systemd/system/podnet-cluster.service").read_text()
    wipe(hosts[red])
    assert "cbr0" not in hosts[red].check_output("ip -o link")
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    restored = hosts[red].run(exec_start)
    assert restored.rc == 0, restored.stderr
    assert "changed bridge cbr0" in restored.stdout and "changed routes" in restored.stdout
    assert_same(before, node_state(lab, red), "the restore did not bring the node back")
    again = hosts[red].run(exec_start)
    assert again.rc == 0 and "nothing to do" in again.stdout, again.stdout
    assert unchanged(playbook(lab, "site", "--check")), "a converge after the restore would change something"
    verify = playbook(lab, "verify")
    assert "PASSED" in verify.stdout


SEEN_BY = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1); srv.settimeout(20)
conn, peer = srv.accept(); conn.sendall(peer[0].encode()); conn.close()
"""


def test_a_non_node_host_on_the_node_lan_answers_a_pod_and_sees_the_node(lab: Lab):
    """l2_routes: the node networks are not exempt from masquerade, only the node addresses: the lab router (on
    the nodes' segment, no route to pods) answers a pod, and sees the node's address."""
    red = lab.nodes[0]
    router = "%s-router" % lab.name
    converged(lab, lab_hosts(str(lab.hosts_yml)), [red])
    state = yaml.safe_load((lab.inventory_dir / ".podnet_state.yml").read_text())["nodes"]
    import ipaddress
    block = ipaddress.ip_network(state[red][0])
    pod_ip = block[block.num_addresses // 2 - 1]          # inside host-local's half, unused in the lab
    pod = "%s-pod" % lab.name

    def sh(*argv):
        return subprocess.run(list(argv), capture_output=True, text=True, check=True)

    subprocess.run(["ip", "netns", "del", pod], capture_output=True, check=False)
    sh("ip", "netns", "add", pod)
    try:
        sh("ip", "-n", red, "link", "add", "pdvt0", "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "-n", red, "link", "set", "pdvt0", "master", "cbr0", "up")
        sh("ip", "-n", pod, "addr", "add", "%s/%d" % (pod_ip, block.prefixlen), "dev", "eth0")
        sh("ip", "-n", pod, "link", "set", "eth0", "up")
        sh("ip", "-n", pod, "link", "set", "lo", "up")
        sh("ip", "-n", pod, "route", "add", "default", "via", str(block[1]))
        server = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % router, "python3", "-c", SEEN_BY,
                                   "172.26.9.1", "47999"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            client = ("import socket,time\nfor i in range(50):\n    try:\n        s=socket.create_connection(("
                      "'172.26.9.1',47999),timeout=5); break\n    except OSError: time.sleep(0.1)\n"
                      "print(s.recv(100).decode())")
            seen = subprocess.run(["nsenter", "--net=/run/netns/%s" % pod, "python3", "-c", client],
                                  capture_output=True, text=True, timeout=60, check=False)
        finally:
            server.kill()
            server.wait()
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.strip() == "172.26.9.11", "the router saw %r, not the node address" % seen.stdout
    finally:
        subprocess.run(["ip", "-n", red, "link", "del", "pdvt0"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", pod], capture_output=True, check=False)


def test_the_boot_unit_runs_the_restore_with_the_interpreter_of_the_module(lab: Lab, tmp_path):
    """The units and the restore program name the Python that ran the node module (not /usr/bin/python3), and
    the preflight refuses one that a reboot removes."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    python = "/usr/bin/python%d.%d" % sys.version_info[:2]
    try:
        playbook(lab, "site", ansible_python_interpreter=python)
        (exec_start, _i), (exec_post, _j) = boot_lines(lab, red)
        assert exec_start.split()[0] == python and exec_post.split()[0] == python, (exec_start, exec_post)
        program = Path(lab.node_root(red), "upper/var-lib/podnet/podnet-restore").read_text()
        assert program.startswith("#!%s\n" % python)
        again = hosts[red].run(exec_start)
        assert again.rc == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
        # a Python under /tmp is gone after a reboot: refused before any node changes
        volatile = Path("/tmp/podnet-py-%d" % os.getpid())
        volatile.unlink(missing_ok=True)
        volatile.symlink_to(python)
        before = {n: node_state(lab, n) for n in lab.nodes}
        proc = playbook(lab, "site", check=False, ansible_python_interpreter=str(volatile))
        assert proc.returncode != 0
        assert "ansible_python_interpreter" in proc.stdout and str(volatile) in proc.stdout, proc.stdout[-3000:]
        for n in lab.nodes:
            assert_same(before[n], node_state(lab, n), "a refused interpreter changed %s" % n)
    finally:
        Path("/tmp/podnet-py-%d" % os.getpid()).unlink(missing_ok=True)
        playbook(lab, "site")
    (exec_start, _i), _post = boot_lines(lab, red)
    assert exec_start.split()[0] == "/usr/bin/python3"


def test_teardown_returns_every_node_to_its_state_before_the_first_converge(lab: Lab, pristine, operated: Operated):
    """--check changes nothing; then every node is back to its state before the first converge, with what was
    there kept (each case of ``operated``); a second teardown changes nothing."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red, green = lab.nodes
    converged(lab, hosts)
    # red's restore program once ran as an earlier version's did, letting Python write its compiled files
    # beside the modules: they go with the modules, and so do their __pycache__ folders
    hosts[red].check_output("python3 -m compileall -q /var/lib/podnet/lib")
    pycache = hosts[red].check_output("find /var/lib/podnet/lib -name '*.pyc'").split()
    assert pycache, "compileall wrote nothing"
    before = {n: node_state(lab, n) for n in lab.nodes}
    check = playbook(lab, "teardown", "--check", "--diff")
    assert all(c["changed"] > 0 for c in recap(check.stdout).values()), check.stdout[-3000:]
    assert "-%s/\n" % os.path.dirname(pycache[0]) in check.stdout, check.stdout[-3000:]  # the folders, named
    for n in lab.nodes:
        assert_same(before[n], node_state(lab, n), "teardown --check changed %s" % n)
    playbook(lab, "teardown")
    for n in lab.nodes:
        assert_same(operated.before[n], node_state(lab, n),
                    "teardown left %s different from before the first converge" % n)
    assert hosts[red].file("/etc/docker/daemon.json").mode == 0o600, "foreign state: daemon.json's mode"
    # daemon.json symlink: teardown puts the target's keys back, the link still there; the directories it
    # created are gone
    assert hosts[green].file("/etc/docker/daemon.json").is_symlink, "daemon.json symlink: the link is gone"
    managed = hosts[green].file("/etc/docker-managed/daemon.json")
    assert json.loads(managed.content_string) == {"log-level": "warn"}, "daemon.json symlink: the target's keys"
    assert not any(hosts[green].file(d).exists for d in operated.created), "daemon.json symlink: created dirs"
    # foreign proto-158 route: no run, teardown included, removes it
    assert hosts[green].check_output("ip route show proto 158").strip() == "192.168.77.0/24 via 172.26.9.1 dev eth0", \
        "foreign proto-158 route: not kept by teardown"
    # (taken away before the second teardown: without a record, a teardown removes every route of the protocol)
    hosts[green].check_output("ip route del %s" % FOREIGN_158)
    # RA default route: teardown puts accept_ra back
    assert hosts[green].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() == \
        operated.accept_ra[green], "RA default route: accept_ra not put back"
    again = playbook(lab, "teardown")
    assert unchanged(again), "a second teardown changed something"
    remove_what_was_there(lab)
    torn_down(lab, pristine)
