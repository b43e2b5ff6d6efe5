# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Lifecycle on a lab built unlike the defaults (named nodes, dual stack, /26 blocks, both runtimes):
boot restore from the record, teardown back to the state before the first converge, the state file lost,
and what an operator or another tool left on a node. The setting changes are test_lifecycle_settings.py
and test_lifecycle_runtimes.py (Docker restarts too), each on a lab of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lib.labtools import BIN, Lab, in_ns, recap, run
from lib.lifecycle import boot_lines, build_lab, gateways, kernel_of, wipe
from lib.nodestate import assert_same, node_changes, node_state, playbook, record_path, unchanged
from lib.netns_backend import lab_hosts

PREFIX = "plc"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    return build_lab(PREFIX, tmp_path_factory, request)


# What podnet.cluster leaves on a node, by name: its record, its files, its bridge, its chains. A teardown removes
# them all (without a record, "only what carries the collection's names and marks", and the bridge's link stays).
PODNET_FILES = ("etc/podnet/node.json", "etc/sysctl.d/90-podnet-cluster.conf", "etc/cni/net.d/10-podnet.conflist",
                "etc/systemd/system/podnet-cluster.service", "var-lib/podnet")


def holds_podnet(lab: Lab, node: str) -> bool:
    upper = Path(lab.node_root(node), "upper")
    # a file or directory removed from the node's overlay leaves a whiteout there (a character device): not one
    if any((upper / rel).is_file() or (upper / rel).is_dir() for rel in PODNET_FILES):
        return True
    if "cbr0" in in_ns(node, "ip", "-o", "link").stdout:
        return True
    return any("PODNET" in in_ns(node, tool).stdout for tool in ("iptables-save", "ip6tables-save"))


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


def tear_down(lab: Lab) -> None:
    """A teardown, unless no node holds anything of podnet.cluster: the lab as built, or as the previous test's
    own teardown left it (a test that ends with a teardown asserts what it left), needs none."""
    if any(holds_podnet(lab, n) for n in lab.nodes):
        playbook(lab, "teardown")
    assert not any(holds_podnet(lab, n) for n in lab.nodes), "the teardown left something of podnet.cluster"


def test_restore_from_record_and_teardown_to_pristine(lab: Lab):
    hosts = lab_hosts(str(lab.hosts_yml))
    red, green = lab.nodes
    # What was there before podnet.cluster: a foreign route, a foreign rule, a foreign daemon.json key (0600).
    hosts[red].check_output("ip route add 192.168.99.0/24 via 172.26.9.1 proto static")
    hosts[red].check_output("iptables -A FORWARD -s 198.51.100.7/32 -j DROP")
    hosts[red].check_output("mkdir -p /etc/docker && printf '{\\n  \"log-level\": \"warn\"\\n}\\n' > "
                            "/etc/docker/daemon.json && chmod 600 /etc/docker/daemon.json")
    pristine = {n: node_state(lab, n) for n in lab.nodes}

    playbook(lab, "site")
    converged = {n: node_state(lab, n) for n in lab.nodes}
    daemon = json.loads(hosts[red].file("/etc/docker/daemon.json").content_string)
    assert daemon["log-level"] == "warn" and daemon["bridge"] == "cbr0" and daemon["iptables"] is False
    assert hosts[red].file("/etc/docker/daemon.json").mode == 0o600
    unit = Path(lab.node_root(red), "upper/etc/systemd/system/podnet-cluster.service")
    text = unit.read_text()
    for needle in ("Type=oneshot", "RemainAfterExit=yes", "After=network-online.target",
                   "Before=docker.service containerd.service crio.service kubelet.service"):
        assert needle in text

    # systemd accepts the units (the drop-in next to a stand-in docker.service).
    units_dir = unit.parent
    check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    dropin = (units_dir / "docker.service.d" / "10-podnet-cluster.conf").read_text()
    assert "ExecStartPost=" in dropin

    # A reboot: the node back to its underlay only, then the unit's ExecStart exactly as written.
    hosts[red].check_output("ip link del cbr0")
    hosts[red].check_output("ip route flush proto 158")
    hosts[red].check_output("ip -6 route flush proto 158")
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat"):
            for line in hosts[red].check_output("%s-save -t %s" % (tool, table)).splitlines():
                if "podnet.cluster" in line and line.startswith("-A "):
                    hosts[red].check_output("%s -t %s -D %s" % (tool, table, line[3:]))
        for table, chain in (("filter", "PODNET-FORWARD"), ("nat", "PODNET-MASQ")):
            hosts[red].check_output("%s -t %s -F %s && %s -t %s -X %s" % (tool, table, chain, tool, table, chain))
    hosts[red].check_output("sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0")
    assert "cbr0" not in hosts[red].check_output("ip -o link")
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    restored = hosts[red].run(exec_start)
    assert restored.rc == 0, restored.stderr
    assert "changed bridge cbr0" in restored.stdout and "changed routes" in restored.stdout
    assert_same(converged[red], node_state(lab, red), "the restore did not bring the node back")
    again = hosts[red].run(exec_start)
    assert again.rc == 0 and "nothing to do" in again.stdout, again.stdout
    assert unchanged(playbook(lab, "site", "--check")), "a converge after the restore would change something"
    verify = playbook(lab, "verify")
    assert "PASSED" in verify.stdout

    # Teardown: --check changes nothing; then every node is back to its state before the first converge.
    before = {n: node_state(lab, n) for n in lab.nodes}
    check = playbook(lab, "teardown", "--check", "--diff")
    assert all(c["changed"] > 0 for c in recap(check.stdout).values()), check.stdout[-3000:]
    for n in lab.nodes:
        assert_same(before[n], node_state(lab, n), "teardown --check changed %s" % n)
    playbook(lab, "teardown")
    for n in lab.nodes:
        assert_same(pristine[n], node_state(lab, n), "teardown left %s different from before the first converge" % n)
    assert hosts[red].file("/etc/docker/daemon.json").mode == 0o600
    again = playbook(lab, "teardown")
    assert unchanged(again), "a second teardown changed something"


def test_boot_with_a_sysctl_file_that_turns_forwarding_off(lab: Lab):
    """A sysctl.d file read after ours sets forwarding off (systemd-sysctl applied it at boot): the unit's own
    ExecStart brings back the bridge, its gateways, forwarding, chains and routes, and says what overrides it
    (journal, exit status); the Docker drop-in's line cannot fail docker.service."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    playbook(lab, "site")
    converged = node_state(lab, red)
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
        assert_same(kernel_of(converged), kernel_of(node_state(lab, red)), "the restore did not bring the node back")
        assert not start_ignored and post_ignored, "the drop-in's ExecStartPost must start with '-'"
        # dockerd strips the IPv6 gateways; the drop-in puts them back and, whatever it meets, Docker starts
        hosts[red].check_output("for a in $(ip -6 -o addr show dev cbr0 scope global | awk '{print $4}'); do "
                                "ip addr del $a dev cbr0; done")
        post = hosts[red].run(exec_post)
        assert post.rc == 1 and operator in post.stderr and post_ignored
        assert_same(kernel_of(converged), kernel_of(node_state(lab, red)), "the drop-in did not put the gateways back")
    finally:
        hosts[red].run("rm -f %s" % operator)
    again = hosts[red].run(exec_start)
    assert again.rc == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


def test_boot_when_the_node_address_comes_after_the_restore_starts(lab: Lab):
    """The node IP (from which the bridge takes its MTU, and through which the peers are on-link) is not on
    eth0 when the restore starts: the bridge and its gateways come first, the routes once the address is there."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    # A converge only where red is not as its record says (the previous test ends with red so: its restore
    # found nothing to do). The case compares red after the restore with red before the wipe: a red that were
    # not as its record says would fail that comparison anyway.
    if not restores_to_itself(lab, hosts[red], red):
        playbook(lab, "site")
    converged = node_state(lab, red)
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
    assert_same(converged, node_state(lab, red), "the restore did not bring the node back")


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


def test_a_daemon_json_that_is_a_symlink_stays_one(lab: Lab):
    """An operator keeps daemon.json elsewhere and links it: the converge writes the target and keeps the link
    (and the target's mode); teardown puts the target's keys back, the link still there. The record lists as
    created only directories that were not there before."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    playbook(lab, "teardown")
    # the lab's own /etc/docker is put back afterwards, so that later tests find the node as the lab made it
    hosts[red].check_output("rm -rf /etc/docker.lab && if [ -e /etc/docker ]; then cp -a /etc/docker /etc/docker.lab; fi")
    hosts[red].check_output("rm -rf /etc/docker && mkdir -p /etc/docker /etc/docker-managed && printf "
                            "'{\\n  \"log-level\": \"warn\"\\n}\\n' > /etc/docker-managed/daemon.json && "
                            "chmod 640 /etc/docker-managed/daemon.json && "
                            "ln -s ../docker-managed/daemon.json /etc/docker/daemon.json")
    existed = {d for d in ("/etc/podnet", "/etc/cni", "/etc/cni/net.d", "/var/lib/podnet", "/etc/systemd/system",
                           "/etc/systemd/system/docker.service.d", "/etc/docker")
               if hosts[red].file(d).is_directory}
    try:
        playbook(lab, "site")
        link = hosts[red].file("/etc/docker/daemon.json")
        assert link.is_symlink and link.linked_to == "/etc/docker-managed/daemon.json"
        managed = hosts[red].file("/etc/docker-managed/daemon.json")
        data = json.loads(managed.content_string)
        assert data["log-level"] == "warn" and data["bridge"] == "cbr0" and managed.mode == 0o640
        record = json.loads(hosts[red].file("/etc/podnet/node.json").content_string)
        created = record["pristine"]["created_dirs"]
        assert created and not set(created) & existed, (created, existed)
        assert all(hosts[red].file(d).is_directory for d in created)
        assert unchanged(playbook(lab, "site"))
        playbook(lab, "teardown")
        assert hosts[red].file("/etc/docker/daemon.json").is_symlink
        assert json.loads(managed.content_string) == {"log-level": "warn"}
        assert not any(hosts[red].file(d).exists for d in created)
    finally:
        # the teardown above ran unless the test failed before it; no converge afterwards: every later test
        # converges or tears down itself at its start
        if any(holds_podnet(lab, n) for n in lab.nodes):
            playbook(lab, "teardown")
        hosts[red].run("rm -rf /etc/docker /etc/docker-managed && if [ -e /etc/docker.lab ]; then mv /etc/docker.lab /etc/docker; fi")


def test_lost_state_file_is_rebuilt_from_the_nodes_and_nothing_moves(lab: Lab):
    red, green = lab.nodes
    state_path = lab.inventory_dir / ".podnet_state.yml"
    tear_down(lab)
    state_path.unlink(missing_ok=True)
    # red joins first and takes the first blocks; green comes later. A fresh plan would order them by name
    # (green first): only adoption keeps each node on what it holds.
    inv = yaml.safe_load(lab.hosts_yml.read_text())
    group = inv["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]
    del group["hosts"][green]
    group["vars"]["podnet_state_file"] = str(state_path)
    only_red = lab.inventory_dir / "red.yml"
    only_red.write_text(yaml.safe_dump(inv))
    run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(only_red)])
    only_red.unlink()
    playbook(lab, "site")
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

    # A lost state file and an inventory that gives red's block to green: refused before any change.
    state_path.unlink()
    inv = yaml.safe_load(lab.hosts_yml.read_text())
    group = inv["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]
    group["hosts"][green]["podnet_pod_cidrs"] = first[red]
    other = lab.inventory_dir / "steal.yml"
    other.write_text(yaml.safe_dump(inv))
    group["vars"]["podnet_state_file"] = str(state_path)
    other.write_text(yaml.safe_dump(inv))
    proc = run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(other)], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert red in out and green in out and first[red][0] in out and "podnet_allow_readdress" in out, out[-3000:]
    assert not state_path.exists()
    for n in lab.nodes:
        assert_same(converged[n], node_state(lab, n), "a refused plan changed %s" % n)
    other.unlink()
    # no converge to write the state file again: the teardown needs none (each node's record says what goes), a
    # converge without it makes a fresh plan for torn-down nodes, and every later test starts with one or the other


def test_routes_of_our_protocol_found_at_the_first_converge_are_named_and_kept(lab: Lab):
    """A route with protocol 158 that podnet.cluster did not make (another tool uses the number): the first
    converge warns, naming it and podnet_route_protocol, and no run, teardown included, removes it."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    playbook(lab, "teardown")
    foreign = "192.168.77.0/24 via 172.26.9.1 dev eth0 proto 158"
    hosts[red].check_output("ip route add %s" % foreign)
    try:
        first = playbook(lab, "site")
        said = first.stdout + first.stderr      # warnings go to stderr
        assert "192.168.77.0/24" in said and "podnet_route_protocol" in said, said[-4000:]
        assert "192.168.77.0/24 via 172.26.9.1" in hosts[red].check_output("ip route show proto 158")
        assert unchanged(playbook(lab, "site"))
        playbook(lab, "teardown")
        assert hosts[red].check_output("ip route show proto 158").strip() == \
            "192.168.77.0/24 via 172.26.9.1 dev eth0"
    finally:
        # no converge afterwards: every later test converges or tears down itself at its start
        hosts[red].run("ip route del 192.168.77.0/24 proto 158")


def test_an_ipv6_default_route_from_router_advertisements_survives_forwarding(lab: Lab):
    """IPv6 forwarding makes the kernel ignore router advertisements (accept_ra=1): the uplink of an RA-learned
    default route gets accept_ra=2, persisted with the forwarding settings, and put back by teardown."""
    hosts = lab_hosts(str(lab.hosts_yml))
    red = lab.nodes[0]
    tear_down(lab)
    hosts[red].check_output("ip -6 route add default via fe80::1 dev eth0 proto ra metric 2048")
    try:
        before = hosts[red].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip()
        assert before != "2"
        playbook(lab, "site")
        assert hosts[red].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() == "2"
        assert "net/ipv6/conf/eth0/accept_ra = 2" in hosts[red].file("/etc/sysctl.d/90-podnet-cluster.conf") \
            .content_string
        green = lab.nodes[1]
        assert hosts[green].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() != "2"
        playbook(lab, "teardown")
        assert hosts[red].file("/proc/sys/net/ipv6/conf/eth0/accept_ra").content_string.strip() == before
    finally:
        hosts[red].run("ip -6 route del default via fe80::1 dev eth0 proto ra metric 2048")


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
    playbook(lab, "site")
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
