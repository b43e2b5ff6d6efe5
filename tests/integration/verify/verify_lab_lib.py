# SPDX-License-Identifier: Apache-2.0
"""Helpers of the verify lab tests: a small cluster in scratch network namespaces (real kernel networking).

Topology (``P`` = ``podnet-v-<pytest pid>-<n>``, one lab per test module)::

                       P-sw (bridge br0, the "switch")
          +--------------+--------------+--------------+
       P-node1 eth0   P-node2 eth0   P-node3 eth0   P-rt eth0 172.30.77.254, fd30:77::fe
       172.30.77.11   172.30.77.12   172.30.77.13     |   (forwards; no route to any pod network)
       cbr0 10.244.1.1/24, fd00:10:244:1::1/64 ...  P-rt eth1 198.51.100.1, 2001:db8:51::1
                                                      |
                                                    P-ext eth0 198.51.100.10, 2001:db8:51::10

Each node: forwarding on (inside its namespace only), a route to every other node's pod subnets via that
node's IP, a default route via the router, and the masquerade: ``-s <pod subnet> -j VMASQ`` in
POSTROUTING, where VMASQ RETURNs traffic to the cluster and node networks and masquerades the rest
(iptables and ip6tables; iptables allows one ``-d`` per rule). node1 runs ``[cni]``, node2 no runtime of
the collection (``[]``: its probe pods are wired by veths, on the highest addresses of its blocks, which no
allocator hands out), node3 ``[docker, cni]`` (host-local gets the lower half of the IPv4 block). Each CNI
node has its own conflist and lease directory under the lab directory. (A ``[docker]`` node cannot be
verified: Docker's fixed-cidr covers its whole IPv4 block; a test checks that verify refuses it.)

Ansible reaches the namespaces through the collection's connection plugin ``podnet.lab.netns`` with a
per-node root (private ``/etc``, ``/var/lib``, ``/run``, as lab nodes have), so probe pods must survive the
command's private mount namespace and refer to themselves as ``/proc/PID/ns/net``.

Nothing is created in the machine's own namespace (veths are created directly inside the namespaces).
Leftovers of a killed run (namespaces, probe servers, lab directories whose pytest pid is gone) are
removed at the start of the next session.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from lib import forkserver
from lib.labtools import CODE_CACHE, pid_alive, remove_stale_namespaces

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")
PREFIX = "podnet-v-"
LAB_BASE = Path("/tmp/podnet-v")
SCRIPT = "podnet_probe.py"
_counter = itertools.count(1)

CLUSTER_V4 = "10.244.0.0/16"
CLUSTER_V6 = "fd00:10:244::/56"
NODE_NET_V4 = "172.30.77.0/24"
NODE_NET_V6 = "fd30:77::/64"
EXTERNAL_V4 = "198.51.100.10"
EXTERNAL_V6 = "2001:db8:51::10"
NODES = {
    # name: (index, runtimes)
    "node1": (1, ["cni"]),
    "node2": (2, []),
    "node3": (3, ["docker", "cni"]),
}


#: The oldest Python the target side claims (ansible-core 2.19 runs modules on 3.8 and later): a real
#: interpreter binary (pyenv's shims do not work inside a node), or None when this machine has none.
OLDEST_PYTHON = next(iter(sorted(glob.glob("/root/.pyenv/versions/3.8.*/bin/python3.8")) +
                          [p for p in ("/usr/bin/python3.8", "/usr/local/bin/python3.8") if os.path.exists(p)]), None)


def pod_v4(i):
    return "10.244.%d.0/24" % i


def pod_v6(i):
    return "fd00:10:244:%x::/64" % i


def node_v4(i):
    return "172.30.77.%d" % (10 + i)


def node_v6(i):
    return "fd30:77::%x" % (0x10 + i)


# --------------------------------------------------------------------------- #
# process and namespace helpers (only ever acting on our own objects)
# --------------------------------------------------------------------------- #

def sh(*argv, check=True, input=None):
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc %d): %s%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def probe_processes(marker):
    """PIDs of probe servers whose command line contains ``marker`` (a lab's unique state dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv = handle.read().split(b"\0")
            with open("/proc/%s/stat" % entry) as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        text = [a.decode("utf-8", "replace") for a in argv]
        if any(a.endswith(SCRIPT) for a in text) and any(marker in a for a in text):
            pids.append(int(entry))
    return pids


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def state_dir_marker(lab_id):
    return "/run/%s%s-verify" % (PREFIX, lab_id)


# --------------------------------------------------------------------------- #
# the lab
# --------------------------------------------------------------------------- #

class Run:
    """One ansible-playbook run with the podnet_json callback."""

    def __init__(self, proc):
        self.proc = proc
        self.rc = proc.returncode
        try:
            self.json = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            self.json = None

    @property
    def text(self):
        return "rc=%s\nSTDOUT:\n%s\nSTDERR:\n%s" % (self.rc, self.proc.stdout[-20000:], self.proc.stderr[-5000:])

    def tasks(self, name):
        out = []
        for play in (self.json or {}).get("plays", []):
            for task in play["tasks"]:
                if task["task"]["name"].split(" : ")[-1] == name:
                    out.append(task["hosts"])
        return out

    def task(self, name):
        found = self.tasks(name)
        if not found:
            raise AssertionError("task %r did not run:\n%s" % (name, self.text))
        return found[-1]

    @property
    def result(self):
        """podnet_verify_result, as set by the judge task."""
        hosts = self.task("Judge the probes of every node")
        for res in hosts.values():
            facts = res.get("ansible_facts") or {}
            if "podnet_verify_result" in facts:
                return facts["podnet_verify_result"]
        raise AssertionError("no podnet_verify_result:\n%s" % self.text)

    @property
    def report(self):
        hosts = self.task("Show the matrix")
        return next(iter(hosts.values()))["msg"]

    def failed_hosts(self):
        return sorted(h for h, s in (self.json or {}).get("stats", {}).items() if s.get("failures"))

    def cells(self, check, family=4):
        """{(source, target): cell text} of one matrix."""
        for matrix in self.result["checks"]:
            if matrix["check"] == check and matrix["family"] == family:
                return {(s, t): text for s, row in matrix["rows"].items() for t, text in row.items()}
        raise AssertionError("no %s/%s matrix" % (check, family))


class Lab:
    def __init__(self, lab_id, root, dual_stack=True):
        self.id = lab_id
        self.root = root
        self.dual = dual_stack
        self.ns = {tag: "%s%s-%s" % (PREFIX, lab_id, tag) for tag in ("sw", "rt", "ext", *NODES)}
        self.state_dir = state_dir_marker(lab_id)
        self.inventory = root / "inventory" / "hosts.yml"

    # -- commands in the namespaces ------------------------------------------

    def ip(self, tag, *args, check=True):
        return sh("ip", "-n", self.ns[tag], *args, check=check)

    def exec(self, tag, *argv, check=True):
        return sh("ip", "netns", "exec", self.ns[tag], *argv, check=check)

    def link(self, a, a_if, b, b_if):
        """A veth created directly inside namespace a, its peer moved straight into b."""
        self.ip(a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", self.ns[b])
        self.ip(a, "link", "set", a_if, "up")
        self.ip(b, "link", "set", b_if, "up")

    def addr(self, tag, dev, cidr):
        extra = ["nodad"] if ":" in cidr else []
        self.ip(tag, "addr", "add", cidr, "dev", dev, *extra)

    # -- build / destroy --------------------------------------------------------

    def build(self):
        for tag, name in self.ns.items():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            sh("ip", "netns", "add", name)
            self.ip(tag, "link", "set", "lo", "up")
        self.ip("sw", "link", "add", "br0", "type", "bridge")
        self.ip("sw", "link", "set", "br0", "up")
        # router between the switch and the external network
        self.link("rt", "eth0", "sw", "prt")
        self.ip("sw", "link", "set", "prt", "master", "br0")
        self.addr("rt", "eth0", "172.30.77.254/24")
        self.link("rt", "eth1", "ext", "eth0")
        self.addr("rt", "eth1", "198.51.100.1/24")
        self.addr("ext", "eth0", EXTERNAL_V4 + "/24")
        self.ip("ext", "route", "add", "default", "via", "198.51.100.1")
        self.exec("rt", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if self.dual:
            self.addr("rt", "eth0", "fd30:77::fe/64")
            self.addr("rt", "eth1", "2001:db8:51::1/64")
            self.addr("ext", "eth0", EXTERNAL_V6 + "/64")
            self.ip("ext", "-6", "route", "add", "default", "via", "2001:db8:51::1")
            self.exec("rt", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for name, (i, runtimes) in NODES.items():
            self.link(name, "eth0", "sw", "p%s" % name)
            self.ip("sw", "link", "set", "p%s" % name, "master", "br0")
            self.addr(name, "eth0", node_v4(i) + "/24")
            self.ip(name, "link", "add", "cbr0", "type", "bridge")
            self.ip(name, "link", "set", "cbr0", "up")
            self.addr(name, "cbr0", pod_v4(i).replace(".0/24", ".1/24"))
            self.exec(name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.ip(name, "route", "add", "default", "via", "172.30.77.254")
            self.masquerade(name, 4, "-A")
            if self.dual:
                self.addr(name, "eth0", node_v6(i) + "/64")
                self.addr(name, "cbr0", pod_v6(i).replace("::/64", "::1/64"))
                self.exec(name, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
                self.ip(name, "-6", "route", "add", "default", "via", "fd30:77::fe")
                self.masquerade(name, 6, "-A")
            for other, (j, _r) in NODES.items():
                if other != name:
                    self.ip(name, "route", "add", pod_v4(j), "via", node_v4(j))
                    if self.dual:
                        self.ip(name, "-6", "route", "add", pod_v6(j), "via", node_v6(j))
            if "cni" in runtimes:
                self.write_conflist(name, i, half="docker" in runtimes)
        self.write_inventory()
        return self

    def masquerade(self, name, family, verb):
        """The node's masquerade: ``-s <pod subnet>`` jumps to VMASQ, which RETURNs traffic to the cluster
        and node networks and masquerades the rest (iptables allows one ``-d`` per rule)."""
        i = NODES[name][0]
        tool = "iptables" if family == 4 else "ip6tables"
        pod, cluster, nodes = (pod_v4(i), CLUSTER_V4, NODE_NET_V4) if family == 4 else (pod_v6(i), CLUSTER_V6, NODE_NET_V6)
        if verb == "-A":
            self.exec(name, tool, "-t", "nat", "-N", "VMASQ")
            self.exec(name, tool, "-t", "nat", "-A", "VMASQ", "-d", cluster, "-j", "RETURN")
            self.exec(name, tool, "-t", "nat", "-A", "VMASQ", "-d", nodes, "-j", "RETURN")
            self.exec(name, tool, "-t", "nat", "-A", "VMASQ", "-j", "MASQUERADE")
        self.masquerade_jump(name, family, verb)

    def masquerade_jump(self, name, family, verb):
        i = NODES[name][0]
        tool = "iptables" if family == 4 else "ip6tables"
        self.exec(name, tool, "-t", "nat", verb, "POSTROUTING", "-s", pod_v4(i) if family == 4 else pod_v6(i),
                  "-j", "VMASQ")

    def write_conflist(self, name, i, half):
        v4 = {"subnet": pod_v4(i), "gateway": pod_v4(i).replace(".0/24", ".1")}
        if half:  # Docker takes the upper half of the IPv4 block (fixed-cidr)
            v4.update(rangeStart=pod_v4(i).replace(".0/24", ".2"), rangeEnd=pod_v4(i).replace(".0/24", ".126"))
        ranges = [[v4]]
        routes = [{"dst": "0.0.0.0/0"}]
        if self.dual:
            ranges.append([{"subnet": pod_v6(i), "gateway": pod_v6(i).replace("::/64", "::1")}])
            routes.append({"dst": "::/0"})
        conf = {
            "cniVersion": "0.4.0",
            "name": "podnet",
            "plugins": [
                {"type": "bridge", "bridge": "cbr0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.root / name / "leases"),
                          "ranges": ranges, "routes": routes}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }
        folder = self.root / name / "cni"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "10-podnet.conflist").write_text(json.dumps(conf, indent=2))

    def write_inventory(self):
        hosts = {}
        for name, (i, runtimes) in NODES.items():
            host = {
                "podnet_netns": self.ns[name],
                "podnet_netns_root": str(self.root / name / "root"),
                "podnet_node_ip": [node_v4(i) + "/24"] + ([node_v6(i) + "/64"] if self.dual else []),
                "podnet_pod_cidrs": [pod_v4(i)] + ([pod_v6(i)] if self.dual else []),
                "podnet_runtimes": runtimes,
            }
            if "cni" in runtimes:
                host["podnet_cni_conf_dir"] = str(self.root / name / "cni")
            hosts[name] = host
        group_vars = {
            "podnet_cluster_cidrs": [CLUSTER_V4] + ([CLUSTER_V6] if self.dual else []),
            "podnet_verify_external": EXTERNAL_V4,
            "podnet_verify_external_host": "external",
            "podnet_verify_timeout": 1.5,
        }
        if self.dual:
            group_vars["podnet_verify_external_ipv6"] = EXTERNAL_V6
        inventory = {"all": {
            "vars": {
                "ansible_connection": "podnet.lab.netns",
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_become": False,
                # the nodes' compile cache the session's labs share (lib/labtools.py)
                "podnet_netns_code_cache": str(CODE_CACHE),
                "podnet_verify_state_dir": self.state_dir,
            },
            "children": {
                "podnet_nodes": {"hosts": hosts, "vars": group_vars},
                "outside": {"hosts": {"external": {
                    "podnet_netns": self.ns["ext"],
                    "podnet_netns_root": str(self.root / "ext" / "root"),
                }}},
            },
        }}
        self.inventory.parent.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))

    def processes(self):
        """Probe servers of this lab still running (there must be none after a verify run)."""
        return probe_processes(self.state_dir)

    def state_dirs_left(self):
        """Probe records left in any host's private /run."""
        left = []
        for path in self.root.glob("*/root/upper/run/%s" % Path(self.state_dir).name):
            left.extend(str(p) for p in path.iterdir())
        return left

    def destroy(self):
        kill_pids(self.processes())
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- running Ansible ----------------------------------------------------------

    def playbook(self, *args, playbook="podnet.cluster.verify", timeout=240):
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
                   ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_FORCE_COLOR="0")
        proc = forkserver.run([ANSIBLE_PLAYBOOK, "-i", str(self.inventory), playbook, *args], cwd=REPO, env=env,
                              timeout=timeout)
        return Run(proc)

    def verify(self, *args):
        run = self.playbook(*args)
        # whatever the outcome, verify must leave nothing running and no record behind
        assert self.processes() == [], "probe servers left running:\n%s" % run.text
        assert self.state_dirs_left() == [], "probe records left: %s" % self.state_dirs_left()
        return run


def make_lab(dual_stack=True):
    lab_id = "%d-%d" % (os.getpid(), next(_counter))
    root = LAB_BASE / lab_id
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return Lab(lab_id, root, dual_stack=dual_stack)


# --------------------------------------------------------------------------- #
# leftovers
# --------------------------------------------------------------------------- #

def remove_leftovers_of_killed_runs():
    """Namespaces, probe servers and lab directories of earlier runs whose pytest process is gone."""
    pattern = re.compile(r"/run/%s(\d+)-\d+-verify" % re.escape(PREFIX))
    stale = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        match = pattern.search(text)
        if SCRIPT in text and match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            stale.append(int(entry))
    kill_pids(stale)
    remove_stale_namespaces(PREFIX)
    if LAB_BASE.is_dir():
        for path in LAB_BASE.iterdir():
            try:
                owner = int(path.name.split("-")[0])
            except ValueError:
                continue
            if owner != os.getpid() and not pid_alive(owner):
                shutil.rmtree(path, ignore_errors=True)
