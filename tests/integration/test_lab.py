# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The lab as a product: `ansible-playbook podnet.lab.lab`, the netns connection, the inventory.

Runs the real playbook (root needed) with a non-default lab name, 4 nodes, another
underlay subnet and an IPv6 underlay, into a temporary inventory directory; every
namespace and directory is named after this pytest process (plt<pid>) and removed
in finalizers, and leftovers of earlier killed runs are removed first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lib import rootns
from lib.labtools import BIN, LAB_ROOT_BASE, Lab, adhoc_command, in_ns, new_lab, ping, recap, run
from lib.netns_backend import lab_hosts, netns_exists, netns_host

PREFIX = "plt"
NODES = 4
SUBNET = "172.30.9.0/24"
SUBNET6 = "fd00:30:9::/64"
EXTERNAL6 = "fd00:203:9::/64"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("lab") / "inventories" / "lab", request, count=NODES,
                   lab_vars={"podnet_lab_subnet": SUBNET, "podnet_lab_subnet_ipv6": SUBNET6,
                             "podnet_lab_external_cidr_ipv6": EXTERNAL6,
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": ["10.244.0.0/16"]}},
                   code_cache=None)  # the lab's own compile cache, the default (test_inventory_format)
    spec.rootns_before = rootns.snapshot()
    spec.first_run = spec.playbook("present")
    return spec


# --------------------------------------------------------------------------- tests


def test_lab_is_built(lab: Lab):
    assert recap(lab.first_run.stdout)["localhost"]["failed"] == 0
    for ns in lab.namespaces:
        assert netns_exists(ns), ns
    for host in lab.namespaces[1:]:
        for layer in ("etc", "var-lib", "run"):
            assert os.path.isdir("%s/%s/upper/%s" % (lab.root, host, layer))


def test_inventory_format(lab: Lab):
    data = yaml.safe_load(lab.hosts_yml.read_text())
    group = data["all"]["children"]["podnet_lab"]
    assert group["vars"] == {
        "ansible_connection": "podnet.lab.netns",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become": False,
        "podnet_netns_code_cache": "%s/code-cache" % lab.root,
    }
    nodes = group["children"]["podnet_nodes"]
    assert list(nodes["hosts"]) == lab.nodes
    assert nodes["hosts"][lab.nodes[0]] == {
        "podnet_netns": lab.nodes[0],
        "podnet_netns_root": lab.node_root(lab.nodes[0]),
        "podnet_node_ip": ["172.30.9.11/24", "fd00:30:9::11/64"],
    }
    assert nodes["hosts"][lab.nodes[3]]["podnet_node_ip"] == ["172.30.9.14/24", "fd00:30:9::14/64"]
    assert nodes["vars"] == {
        "podnet_verify_external": "203.0.113.10",
        "podnet_verify_external_host": "%s-ext" % lab.name,
        "podnet_verify_external_ipv6": "fd00:203:9::10",
        "podnet_cluster_cidrs": ["10.244.0.0/16"],
    }
    router = "%s-router" % lab.name
    ext = "%s-ext" % lab.name
    assert group["children"]["podnet_lab_router"]["hosts"] == {
        router: {"podnet_netns": router, "podnet_netns_root": lab.node_root(router)}}
    assert group["children"]["podnet_lab_external"]["hosts"] == {
        ext: {"podnet_netns": ext, "podnet_netns_root": lab.node_root(ext)}}


def test_topology(lab: Lab):
    sw, router, ext = lab.namespaces[:3]
    node1 = netns_host(lab.nodes[0])
    assert set(node1.interface("eth0").addresses) >= {"172.30.9.11", "fd00:30:9::11"}
    assert "default via 172.30.9.1 dev eth0" in node1.check_output("ip -4 route show default")
    assert "default via fd00:30:9::1 dev eth0" in node1.check_output("ip -6 route show default")
    # switch: a bridge without addresses, one port per node plus the router's
    switch = netns_host(sw)
    ports = switch.check_output("ip -o link show master br0").splitlines()
    assert len(ports) == NODES + 1
    assert "inet" not in switch.check_output("ip -o addr show dev br0").replace("inet6 fe80", "")
    # router: forwarding on, no NAT at all
    r = netns_host(router)
    assert r.check_output("cat /proc/sys/net/ipv4/ip_forward") == "1"
    assert r.check_output("cat /proc/sys/net/ipv6/conf/all/forwarding") == "1"
    assert "MASQUERADE" not in r.check_output("iptables-save -t nat") + r.check_output("nft list ruleset")
    # external host: routes to the node networks only, no default route
    e = netns_host(ext)
    routes4 = e.check_output("ip -4 route show")
    assert "default" not in routes4 and "default" not in e.check_output("ip -6 route show")
    assert "172.30.9.0/24 via 203.0.113.1 dev eth0" in routes4
    assert "fd00:30:9::/64 via fd00:203:9::1 dev eth0" in e.check_output("ip -6 route show")
    assert "10.244." not in routes4
    # the machine never sees a lab link
    assert not any(lab.name in line for line in rootns.snapshot()["ip -o link"].splitlines())


def test_paths_between_hosts(lab: Lab):
    n1, n4 = lab.nodes[0], lab.nodes[3]
    ext = "%s-ext" % lab.name
    # each path may lose its first packet to neighbour discovery under the load of the whole suite (the machine's
    # neighbour tables are shared by every lab): three tries; the path that must not exist gets one
    assert ping(n1, "172.30.9.14", tries=3)
    assert ping(n4, "fd00:30:9::11", tries=3)
    assert ping(n1, "172.30.9.1", tries=3)
    assert ping(n1, "203.0.113.10", tries=3), "node -> router -> external (IPv4)"
    assert ping(n4, "fd00:203:9::10", tries=3), "node -> router -> external (IPv6)"
    assert ping(ext, "172.30.9.12", tries=3)
    # nothing leads out of the lab
    assert not ping(n1, "192.0.2.1")
    assert "unreachable" in in_ns(ext, "ip", "route", "get", "192.0.2.1").stderr.lower()


def test_switch_hosts_have_permanent_neighbours(lab: Lab):
    """Each host on the switch knows every other one's underlay addresses as permanent entries, with the MAC of
    that host's eth0 (the machine's kernel has one neighbour table for all namespaces: see lab/docs/lab.md)."""
    import json as _json

    hosts = ["%s-router" % lab.name] + lab.nodes
    macs = {h: _json.loads(in_ns(h, "ip", "-j", "link", "show", "dev", "eth0").stdout)[0]["address"] for h in hosts}
    n1 = lab.nodes[0]
    entries = {e["dst"]: e["lladdr"] for e in _json.loads(in_ns(n1, "ip", "-j", "neigh", "show", "nud",
                                                                "permanent").stdout)}
    assert entries["172.30.9.12"] == macs[lab.nodes[1]]
    assert entries["fd00:30:9::14"] == macs[lab.nodes[3]]
    assert entries["172.30.9.1"] == macs["%s-router" % lab.name]
    assert "172.30.9.11" not in entries
    assert len(entries) == 2 * NODES  # router + the other nodes, two families


def test_node_has_its_own_view(lab: Lab):
    hosts = lab_hosts(str(lab.hosts_yml))
    assert set(hosts) == set(lab.namespaces[1:])
    for name in lab.nodes:
        node = hosts[name]
        assert node.check_output("hostname") == name
        assert node.file("/etc/hostname").content_string == name + "\n"
        assert re.search(r"^172\.30\.9\.1\d\s+%s$" % re.escape(name), node.file("/etc/hosts").content_string, re.M)
        assert node.file("/etc/resolv.conf").size == 0
        assert sorted(node.check_output("ls /sys/class/net").split()) == ["eth0", "lo"]
        assert node.file("/etc/init.d").listdir() == []
    assert open("/etc/hostname").read().strip() not in lab.nodes
    assert os.path.getsize("/etc/resolv.conf") >= 0  # the machine's own file is untouched (exists as before)


def test_hostname_through_the_connection(lab: Lab):
    results = adhoc_command(lab.hosts_yml, "podnet_lab", "hostname")
    assert set(results) == set(lab.namespaces[1:])
    for host, res in results.items():
        assert res["rc"] == 0 and res["stdout"] == host


def test_files_land_on_one_node_only(lab: Lab, tmp_path: Path):
    n1, n2 = lab.nodes[0], lab.nodes[1]
    fetched = tmp_path / "fetched"
    play = tmp_path / "files.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Write through the netns connection",
        "hosts": n1,
        "gather_facts": True,
        "gather_subset": ["network"],
        "become": True,  # the lab inventory turns become off; must still work
        "tasks": [
            {"name": "etc", "ansible.builtin.copy": {"dest": "/etc/podnet-lab-test", "content": "etc of node1\n",
                                                     "mode": "0644"}},
            {"name": "var lib", "ansible.builtin.copy": {"dest": "/var/lib/podnet-lab-test",
                                                         "content": "var-lib\n", "mode": "0644"}},
            {"name": "run", "ansible.builtin.copy": {"dest": "/run/podnet-lab-test", "content": "run\n",
                                                     "mode": "0644"}},
            {"name": "fetch", "ansible.builtin.fetch": {"src": "/etc/podnet-lab-test", "dest": str(fetched),
                                                        "flat": True}},
            {"name": "facts", "ansible.builtin.assert": {"that": [
                "ansible_facts.hostname == inventory_hostname",
                "ansible_facts.default_ipv4.address == '172.30.9.11'"]}},
        ],
    }]))
    proc = run([str(BIN / "ansible-playbook"), "-i", str(lab.hosts_yml), str(play)])
    assert recap(proc.stdout)[n1]["failed"] == 0
    assert fetched.read_text() == "etc of node1\n"
    node1 = netns_host(n1, root=lab.node_root(n1))
    node2 = netns_host(n2, root=lab.node_root(n2))
    for path, content in (("/etc/podnet-lab-test", "etc of node1\n"), ("/var/lib/podnet-lab-test", "var-lib\n"),
                          ("/run/podnet-lab-test", "run\n")):
        assert node1.file(path).content_string == content, path
        assert not node2.file(path).exists, path
        assert not os.path.exists(path), "%s reached the machine" % path
    assert Path(lab.node_root(n1), "upper", "etc", "podnet-lab-test").read_text() == "etc of node1\n"
    assert Path(lab.node_root(n1), "upper", "var-lib", "podnet-lab-test").exists()
    assert Path(lab.node_root(n1), "upper", "run", "podnet-lab-test").exists()


def test_second_run_changes_nothing(lab: Lab):
    proc = lab.playbook("present")
    assert recap(proc.stdout)["localhost"]["changed"] == 0, proc.stdout[-3000:]
    proc = lab.playbook("present", True, "--check", "--diff")
    assert recap(proc.stdout)["localhost"]["changed"] == 0, proc.stdout[-3000:]


def test_connection_with_a_hand_built_namespace(lab: Lab, tmp_path: Path):
    ns = "%s-hand" % lab.name
    if netns_exists(ns):
        subprocess.run(["ip", "netns", "delete", ns], check=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        inv = tmp_path / "hand.yml"
        # one ad-hoc run, two hosts: a hand-built namespace, and a missing one (an unreachable host, not a command
        # run on the machine)
        missing = "%s-missing" % lab.name
        inv.write_text(yaml.safe_dump({"all": {"hosts": {"hand": {
            "podnet_netns": ns,
            "ansible_connection": "podnet.lab.netns",
            "ansible_python_interpreter": "/usr/bin/python3",
        }, missing: {"ansible_connection": "podnet.lab.netns"}}}}))
        proc = run([str(BIN / "ansible"), "-i", str(inv), "all", "-m", "command", "-a", "ip -o link"], check=False,
                   ANSIBLE_STDOUT_CALLBACK="default")
        block = re.compile(r"^(\S+) \| [A-Z!]+ .*?(?=^\S+ \| |\Z)", re.M | re.S)
        blocks = {m.group(1): m.group(0) for m in block.finditer(proc.stdout)}
        assert set(blocks) == {"hand", missing}, proc.stdout[-3000:]
        hand = re.match(r"^hand \| \w+ \| rc=(\d+) >>\n(.*)", blocks["hand"], re.S)
        assert hand and int(hand.group(1)) == 0, blocks["hand"]
        assert [line.split(":")[1].strip() for line in hand.group(2).rstrip("\n").splitlines()] == ["lo"]
        assert proc.returncode != 0 and "UNREACHABLE" in blocks[missing], proc.stdout[-3000:]
        assert "does not exist" in blocks[missing], proc.stdout[-3000:]
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
        # its default layers (podnet.lab.netns gives every node its own /etc, /var/lib, /run)
        shutil.rmtree("/var/tmp/podnet-netns/%s" % ns, ignore_errors=True)


def test_bad_input_fails_before_any_change(lab: Lab):
    bad = "%sbad" % lab.name
    proc = run([str(BIN / "ansible-playbook"), "podnet.lab.lab", "-e", json.dumps({
        "podnet_lab_name": bad, "podnet_lab_subnet": "172.30.9.1/24", "podnet_lab_external_cidr": "fd00::/64",
        "podnet_lab_root": "/etc/lab", "podnet_lab_inventory_dir": str(lab.inventory_dir) + "-bad"})], check=False)
    assert proc.returncode != 0
    for text in ("podnet_lab_subnet: 172.30.9.1/24 has host bits set", "podnet_lab_external_cidr",
                 "podnet_lab_root: /etc/lab is inside /etc"):
        assert text in proc.stdout, proc.stdout[-3000:]
    assert not netns_exists("%s-sw" % bad)
    assert not os.path.exists("%s/%s" % (LAB_ROOT_BASE, bad))


def test_a_record_on_the_machine_itself_stops_the_build(lab: Lab, tmp_path: Path):
    """A podnet.cluster record in the machine's own /etc shows through every lab node's overlay: the lab
    playbook refuses to build. The record exists only in a private mount namespace of this test (an overlay
    on /etc there), never in the machine's /etc."""
    bad = "%srec" % lab.name
    for sub in ("upper", "work"):
        (tmp_path / sub).mkdir()
    argv = [str(BIN / "ansible-playbook"), "podnet.lab.lab", "-e", json.dumps({
        "podnet_lab_name": bad, "podnet_lab_inventory_dir": str(tmp_path / "inventory"),
        "podnet_lab_root": "%s/%s" % (LAB_ROOT_BASE, bad)})]
    script = ('mount -t overlay overlay -o lowerdir=/etc,upperdir="$1/upper",workdir="$1/work" /etc && '
              'mkdir -p /etc/podnet && echo "{}" > /etc/podnet/node.json && shift && exec "$@"')
    try:
        proc = run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "podnet-test",
                    str(tmp_path)] + argv, check=False)
    finally:  # without the check, a lab is built in that mount namespace: remove what it left
        left = [ns for ns in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
                if ns.startswith(bad + "-")]
        for ns in left:
            subprocess.run(["ip", "netns", "delete", ns], check=False, stderr=subprocess.DEVNULL)
        root_left = os.path.exists("%s/%s" % (LAB_ROOT_BASE, bad))
        shutil.rmtree("%s/%s" % (LAB_ROOT_BASE, bad), ignore_errors=True)
    assert not os.path.exists("/etc/podnet/node.json")
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "/etc/podnet/node.json exists on this machine" in proc.stdout, proc.stdout[-3000:]
    assert left == [] and not root_left, proc.stdout[-3000:]


def test_a_compile_cache_outside_the_lab_is_shared_and_kept_when_the_lab_goes(tmp_path: Path, request):
    """code_cache (podnet_lab_code_cache): the inventory names it, the nodes' module calls fill it instead of
    <root>/code-cache, a second lab's nodes read it (nothing more is written for the same module), removing the
    labs leaves it; a relative path is refused before anything is built."""
    shared = tmp_path / "shared-cache"
    first = new_lab(PREFIX + "c", tmp_path / "first", request, count=1, code_cache=str(shared))
    first.build()
    group = yaml.safe_load(first.hosts_yml.read_text())["all"]["children"]["podnet_lab"]
    assert group["vars"]["podnet_netns_code_cache"] == str(shared)
    run([str(BIN / "ansible"), "-i", str(first.hosts_yml), first.nodes[0], "-m", "ansible.builtin.ping"])
    entries = sorted(p.name for p in shared.rglob("*") if p.is_file())
    assert entries, "the first lab's module call left nothing in %s" % shared
    assert not os.path.exists("%s/code-cache" % first.root)
    second = new_lab(PREFIX + "d", tmp_path / "second", request, count=1, code_cache=str(shared))
    second.build()
    run([str(BIN / "ansible"), "-i", str(second.hosts_yml), second.nodes[0], "-m", "ansible.builtin.ping"])
    assert sorted(p.name for p in shared.rglob("*") if p.is_file()) == entries, "the second lab compiled again"
    for spec in (first, second):
        assert spec.remove().returncode == 0
        assert not os.path.exists(spec.root)
    assert sorted(p.name for p in shared.rglob("*") if p.is_file()) == entries, "removing a lab touched the cache"
    bad = new_lab(PREFIX + "e", tmp_path / "bad", request, count=1, code_cache="cache")
    proc = bad.playbook("present", False)
    assert proc.returncode != 0
    assert "podnet_lab_code_cache: 'cache' is not an absolute path" in proc.stdout, proc.stdout[-3000:]
    assert not any(netns_exists(ns) for ns in bad.namespaces)


def test_documentation():
    for argv in (["ansible-doc", "-t", "connection", "podnet.lab.netns"],
                 ["ansible-doc", "podnet.lab.lab_topology"],
                 ["ansible-doc", "-t", "filter", "podnet.lab.lab_input_errors"],
                 ["ansible-doc", "-t", "role", "podnet.lab.lab"]):
        proc = run([str(BIN / argv[0])] + argv[1:], check=False)
        assert proc.returncode == 0, proc.stderr
        assert "ERROR" not in proc.stderr


def test_absent_removes_everything(lab: Lab):
    # a process in a node's namespace, and one started through the wrapper in a pod-like namespace
    n1 = lab.nodes[0]
    direct = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % n1, "--", "sleep", "600"],
                              start_new_session=True)
    lab.pids.append(direct.pid)
    backend = netns_host(n1, root=lab.node_root(n1)).backend
    wrapped = subprocess.Popen(backend.argv("exec unshare --net sleep 601"), start_new_session=True)
    lab.pids.append(wrapped.pid)
    time.sleep(0.3)
    # --check lists each namespace it would delete once (a node both recorded and asked for was listed twice)
    proc = lab.playbook("absent", True, "--check", "-v")
    for ns in lab.namespaces:
        deletes = re.findall(r"^\s*- ip netns delete %s$" % re.escape(ns), proc.stdout, re.M)
        assert len(deletes) == 1, (ns, proc.stdout[-3000:])
    assert all(netns_exists(ns) for ns in lab.namespaces)
    proc = lab.playbook("absent", True, "-v")
    assert recap(proc.stdout)["localhost"]["failed"] == 0
    assert direct.wait(timeout=10) == -signal.SIGTERM
    assert wrapped.wait(timeout=10) == -signal.SIGTERM
    assert "reason: netns" in proc.stdout and "reason: mount" in proc.stdout
    for ns in lab.namespaces:
        assert not netns_exists(ns), ns
    assert not os.path.exists(lab.root)
    assert not lab.hosts_yml.exists()
    assert rootns.diff(lab.rootns_before, rootns.snapshot()) == ""
    # removing again is a no-op
    proc = lab.playbook("absent")
    assert recap(proc.stdout)["localhost"]["changed"] == 0
