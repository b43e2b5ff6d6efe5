# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""A catalogue of bad inputs (plan, inventory, the hosts' existing state), each refused before any change.

One lab (named nodes, non-default CIDRs, both runtimes), converged once. Each case injects its bad input
(inventory variables and/or something on one node) and asserts of a ``podnet.cluster.site`` run with it (a run
shared by the cases the same task refuses, each on its own node: see BATCHES):

* the run fails;
* the error message names the host (in the message itself, not only in the ``fatal: [host]`` prefix) and the
  variable or the object; a cluster-wide variable (podnet_cluster_cidrs, the node prefix, the service networks)
  names the hosts that have the bad value; the state file's cases name the file;
* there is no Python traceback in the output;
* every node's addresses, links, routes, rules, iptables/ip6tables/nft rule sets, forwarding switches and
  the files under its overlay ``upper/`` (the collection's files, by mode and content), and the plan's state
  file, are byte for byte what they were just before the run.

What a case put on a node is removed again by name after it. A few cases also run on a lab that was never
converged: the refused run leaves no state file and nothing of podnet.cluster on the nodes.
"""

from __future__ import annotations

import os
import re
import shlex
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import yaml

from lib import rootns
from lib.labtools import BIN, Lab, new_lab, recap, run, settled
from lib.netns_backend import lab_hosts

PREFIX = "pbi"
CLUSTER = "10.91.0.0/17"
SUBNET = "172.27.3.0/24"
GATEWAY = "172.27.3.1"
NAMES = ["ash", "birch"]
# Files of the lab itself, not podnet.cluster's.
SKIP_FILES = ("var-lib/cni", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/init.d", "run")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def lab_vars(external_cidr: str) -> Dict[str, Any]:
    """The lab of this catalogue (the converged one and the fresh one differ only in their external network)."""
    return {"podnet_lab_subnet": SUBNET,
            "podnet_lab_external_cidr": external_cidr,
            "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": [CLUSTER],
                                          "podnet_node_prefix_ipv4": 25,
                                          "podnet_runtimes": ["docker", "cni"]}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("bad") / "lab", request, node_names=NAMES,
                   lab_vars=lab_vars("198.18.27.0/24"))
    spec.build()
    first = site(spec, write_inventory(spec, {}, {}))
    assert first.returncode == 0, first.stdout[-3000:]
    assert (spec.inventory_dir / ".podnet_state.yml").exists()
    again = site(spec, write_inventory(spec, {}, {}))
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in recap(again.stdout).values()), again.stdout[-3000:]
    return spec


def state_path(lab: Lab) -> Path:
    return lab.inventory_dir / ".podnet_state.yml"


def write_inventory(lab: Lab, group_vars: Dict[str, Any], host_vars: Dict[str, Dict[str, Any]]) -> Path:
    """The lab's inventory with ``group_vars`` merged into the node group and ``host_vars`` (by suffix)."""
    data = yaml.safe_load(lab.hosts_yml.read_text())
    group = data["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]
    group["vars"]["podnet_state_file"] = str(state_path(lab))
    group["vars"].update(group_vars)
    for suffix, hv in host_vars.items():
        group["hosts"]["%s-%s" % (lab.name, suffix)].update(hv)
    path = lab.inventory_dir / "bad.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def site(lab: Lab, inv: Path, *args: str):
    return run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(inv), *args], check=False)


def snapshot(lab: Lab) -> Dict[str, str]:
    """Everything a refused run must leave alone, as {what: text}."""
    snap: Dict[str, str] = {}
    for node in lab.nodes:
        for key, text in rootns.snapshot(node).items():
            snap["%s: %s" % (node, key)] = text
        files = rootns.files_snapshot(os.path.join(lab.node_root(node), "upper"), skip=SKIP_FILES)
        snap["%s: files" % node] = "".join("%s %s\n" % kv for kv in sorted(files.items()))
    path = state_path(lab)
    snap["state file"] = path.read_text() if path.exists() else "<absent>"
    return snap


def failure_text(out: str) -> str:
    """What the run said about its failures: each failed/fatal result with its message, and ERROR! lines."""
    blocks, current = [], None
    for line in out.splitlines():
        if re.match(r"^(fatal|failed): \[", line) or "ERROR!" in line or line.startswith("[ERROR]"):
            current = [line]
            blocks.append(current)
        elif current is not None and (line.startswith(" ") or line.startswith("\t")):
            current.append(line)
        else:
            current = None
    return "\n".join("\n".join(b) for b in blocks)


def node_sh(lab: Lab, suffix: str, script: str) -> None:
    """Run a shell script on a node as the site run sees it (its namespace and overlay root)."""
    node = "%s-%s" % (lab.name, suffix)
    result = lab_hosts(str(lab.hosts_yml))[node].run(script)
    assert result.rc == 0, "%s on %s: %s %s" % (script, node, result.stdout, result.stderr)


@dataclass
class Case:
    id: str
    # text that the failure message must hold (a variable or an object); host: node suffix named in it
    needles: Tuple[str, ...]
    host: Optional[str] = "ash"
    group_vars: Dict[str, Any] = field(default_factory=dict)
    host_vars: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    # shell on a node before the run, and after it (by name)
    setup: Optional[Tuple[str, str]] = None
    cleanup: Optional[Tuple[str, str]] = None
    # the state file's text for the run (restored after)
    state_text: Optional[str] = None


def bridge(value: Any) -> Dict[str, Dict[str, Any]]:
    return {"ash": {"podnet_bridge": value}}


DAEMON = "/etc/docker/daemon.json"
L2_BRIDGE = {"podnet_fabric": "l2_bridge"}
RECORD = "/etc/podnet/node.json"


def daemon_with(extra: str) -> Tuple[str, str]:
    """Back up daemon.json and add one JSON member to it."""
    return ("ash", "cp -p %s %s.bak && python3 -c %s" % (DAEMON, DAEMON, shlex.quote(
        "import json; p=%r; d=json.load(open(p)); d.update(%s); open(p,'w').write(json.dumps(d, indent=2)+'\\n')"
        % (DAEMON, extra))))


def daemon_text(text: str) -> Tuple[str, str]:
    return ("ash", "cp -p %s %s.bak && printf %%s %s > %s" % (DAEMON, DAEMON, shlex.quote(text), DAEMON))


RESTORE_DAEMON = ("ash", "mv -f %s.bak %s" % (DAEMON, DAEMON))

CASES: List[Case] = [
    # ---- bridge names that are not kernel interface names (they would reach ip -batch and iptables-restore)
    Case("bridge too long", ("podnet_bridge",), host_vars=bridge("podnetbridge0123")),
    Case("bridge with slash", ("podnet_bridge",), host_vars=bridge("br/0")),
    Case("bridge with space", ("podnet_bridge",), host_vars=bridge("br 0")),
    Case("bridge with hash", ("podnet_bridge",), host_vars=bridge("br#0")),
    Case("bridge leading dash", ("podnet_bridge",), host_vars=bridge("-br0")),
    Case("bridge command substitution", ("podnet_bridge",), host_vars=bridge("$(reboot)")),
    Case("bridge semicolon", ("podnet_bridge",), host_vars=bridge("br0;reboot")),
    Case("bridge non-ASCII", ("podnet_bridge",), host_vars=bridge("brü0")),
    Case("bridge number", ("podnet_bridge",), host_vars=bridge(12345)),
    Case("bridge empty", ("podnet_bridge",), host_vars=bridge("")),
    Case("bridge null", ("podnet_bridge",), host_vars=bridge(None)),
    Case("bridge is an existing veth link", ("vx7", "bridge"), host_vars=bridge("vx7"),
         setup=("ash", "ip link add vx7 type veth peer name vx7p"), cleanup=("ash", "ip link del vx7")),
    # ---- CIDRs and lists
    Case("cluster CIDR with a space", ("podnet_cluster_cidrs",),
         group_vars={"podnet_cluster_cidrs": ["10.91.0.0 /17"]}),
    Case("cluster CIDR with host bits", ("podnet_cluster_cidrs", "host bits"),
         group_vars={"podnet_cluster_cidrs": ["10.91.0.1/17"]}),
    Case("cluster CIDR with host bits, /21", ("podnet_cluster_cidrs", "host bits", "10.200.0.1/21"),
         group_vars={"podnet_cluster_cidrs": ["10.200.0.1/21"]}),
    Case("cluster CIDR prefix 33", ("podnet_cluster_cidrs", "10.200.0.0/33"),
         group_vars={"podnet_cluster_cidrs": ["10.200.0.0/33"]}),
    Case("cluster CIDRs empty list", ("podnet_cluster_cidrs",), group_vars={"podnet_cluster_cidrs": []}),
    Case("cluster CIDRs null", ("podnet_cluster_cidrs",), group_vars={"podnet_cluster_cidrs": None}),
    Case("cluster CIDRs a number", ("podnet_cluster_cidrs",), group_vars={"podnet_cluster_cidrs": 10}),
    Case("cluster CIDR of the wrong family for the nodes", ("IPv6",), group_vars={
        "podnet_cluster_cidrs": [CLUSTER, "fd00:91::/56"]}),
    Case("cluster network overlaps the nodes' network", ("node IP", "podnet_cluster_cidrs"), group_vars={
        "podnet_cluster_cidrs": ["172.27.0.0/16"]}),
    Case("node prefix a string", ("podnet_node_prefix_ipv4",),
         group_vars={"podnet_node_prefix_ipv4": "big"}),
    Case("node prefix 31", ("podnet_node_prefix_ipv4",), group_vars={"podnet_node_prefix_ipv4": 31}),
    Case("node prefix 0", ("podnet_node_prefix_ipv4",), group_vars={"podnet_node_prefix_ipv4": 0}),
    Case("non-masquerade CIDR not a network", ("podnet_nonmasquerade_cidrs",),
         host_vars={"ash": {"podnet_nonmasquerade_cidrs": ["192.168.0.0/33"]}}),
    Case("non-masquerade CIDR with host bits", ("podnet_nonmasquerade_cidrs", "host bits"),
         host_vars={"ash": {"podnet_nonmasquerade_cidrs": ["192.168.7.1/24"]}}),
    Case("non-masquerade CIDRs a number", ("podnet_nonmasquerade_cidrs",),
         host_vars={"ash": {"podnet_nonmasquerade_cidrs": 12345}}),
    Case("non-masquerade CIDRs a string", ("podnet_nonmasquerade_cidrs",),
         host_vars={"ash": {"podnet_nonmasquerade_cidrs": "192.168.0.0/16"}}),
    # ---- numbers
    Case("route protocol a string", ("podnet_route_protocol",), host_vars={"ash": {"podnet_route_protocol": "bgp"}}),
    Case("route protocol 0", ("podnet_route_protocol",), host_vars={"ash": {"podnet_route_protocol": 0}}),
    Case("route protocol 300", ("podnet_route_protocol",), host_vars={"ash": {"podnet_route_protocol": 300}}),
    Case("route protocol boot", ("podnet_route_protocol",), host_vars={"ash": {"podnet_route_protocol": 3}}),
    Case("route protocol static", ("podnet_route_protocol",), host_vars={"ash": {"podnet_route_protocol": 4}}),
    Case("route protocol dhcp", ("podnet_route_protocol", "dhcp"),
         host_vars={"ash": {"podnet_route_protocol": 16}}),
    Case("route protocol bgp", ("podnet_route_protocol", "bgp"),
         host_vars={"ash": {"podnet_route_protocol": 186}}),
    Case("bridge MTU 67", ("podnet_bridge_mtu",), host_vars={"ash": {"podnet_bridge_mtu": 67}}),
    Case("bridge MTU 70000", ("podnet_bridge_mtu",), host_vars={"ash": {"podnet_bridge_mtu": 70000}}),
    Case("bridge MTU a string", ("podnet_bridge_mtu",), host_vars={"ash": {"podnet_bridge_mtu": "jumbo"}}),
    # ---- the node's existing state
    Case("daemon.json not JSON", (DAEMON,), setup=daemon_text("{\"bridge\": "), cleanup=RESTORE_DAEMON),
    Case("daemon.json not an object", (DAEMON,), setup=daemon_text("[1, 2]\n"), cleanup=RESTORE_DAEMON),
    Case("daemon.json with bip", (DAEMON, "bip"), setup=daemon_with("{'bip': '172.17.0.1/16'}"),
         cleanup=RESTORE_DAEMON),
    Case("daemon.json with ipv6", (DAEMON, "ipv6"), setup=daemon_with("{'ipv6': True}"), cleanup=RESTORE_DAEMON),
    Case("daemon.json with fixed-cidr-v6", (DAEMON, "fixed-cidr-v6"),
         setup=daemon_with("{'fixed-cidr-v6': 'fd00:1::/64'}"), cleanup=RESTORE_DAEMON),
    Case("sysctl file turns forwarding off at boot", ("/etc/sysctl.d/99-off.conf", "net.ipv4.ip_forward"),
         setup=("ash", "printf 'net.ipv4.ip_forward = 0\\n' > /etc/sysctl.d/99-off.conf"),
         cleanup=("ash", "rm -f /etc/sysctl.d/99-off.conf")),
    Case("foreign route inside the cluster network", ("10.91.96.0/24", CLUSTER),
         setup=("ash", "ip route add 10.91.96.0/24 via %s proto static" % GATEWAY),
         cleanup=("ash", "ip route del 10.91.96.0/24 via %s proto static" % GATEWAY)),
    Case("local address inside the cluster network", ("10.91.100.5", CLUSTER),
         setup=("ash", "ip addr add 10.91.100.5/32 dev eth0"),
         cleanup=("ash", "ip addr del 10.91.100.5/32 dev eth0")),
    Case("node record of a newer version", (RECORD, "newer"),
         setup=("ash", "cp -p %s %s.bak && python3 -c %s" % (RECORD, RECORD, shlex.quote(
             "import json; p=%r; d=json.load(open(p)); d['version']=99; open(p,'w').write(json.dumps(d))" % RECORD))),
         cleanup=("ash", "mv -f %s.bak %s" % (RECORD, RECORD))),
    Case("foreign route for a peer's pod subnet", ("10.91.0.128/26", CLUSTER),
         setup=("ash", "ip route add 10.91.0.128/26 via %s proto static" % GATEWAY),
         cleanup=("ash", "ip route del 10.91.0.128/26 via %s proto static" % GATEWAY)),
    Case("stray pod gateway on the bridge", ("10.91.7.1/25", "podnet_allow_readdress"),
         setup=("ash", "ip addr add 10.91.7.1/25 dev cbr0"), cleanup=("ash", "ip addr del 10.91.7.1/25 dev cbr0")),
    Case("node record not JSON", (RECORD, "not valid JSON"),
         setup=("ash", "cp -p %s %s.bak && printf '{\"version\": 1,' > %s" % (RECORD, RECORD, RECORD)),
         cleanup=("ash", "mv -f %s.bak %s" % (RECORD, RECORD))),
    # ---- the plan and the inventory
    Case("two IPv4 cluster networks", ("podnet_cluster_cidrs",),
         group_vars={"podnet_cluster_cidrs": [CLUSTER, "10.92.0.0/17"]}),
    Case("node IP a number", ("podnet_node_ip",), host_vars={"ash": {"podnet_node_ip": 42}}),
    Case("pod CIDR with host bits", ("podnet_pod_cidrs", "host bits"),
         host_vars={"ash": {"podnet_pod_cidrs": "10.91.5.1/25"}}),
    Case("CNI conflist name a number", ("podnet_cni_conflist_name",),
         host_vars={"ash": {"podnet_cni_conflist_name": 10}}),
    Case("state file of a newer version", ("state file", "version 99"), host=None, state_text="version: 99\nnodes: {}\n"),
    Case("duplicate node IPs", ("same node IP",), host="birch",
         host_vars={"birch": {"podnet_node_ip": "172.27.3.11"}}),
    Case("node IP inside the cluster network", ("podnet_node_ip", "cluster network"),
         host_vars={"ash": {"podnet_node_ip": "10.91.5.5"}}),
    Case("node IP with a space", ("podnet_node_ip",), host_vars={"ash": {"podnet_node_ip": "172.27.3.11 /24"}}),
    Case("pod CIDR outside the cluster", ("podnet_pod_cidrs", "outside"),
         host_vars={"ash": {"podnet_pod_cidrs": "10.92.0.0/25"}}),
    Case("pod CIDR of the wrong family", ("podnet_pod_cidrs", "IPv6"),
         host_vars={"ash": {"podnet_pod_cidrs": "fd00:91::/64"}}),
    Case("two nodes claim the same block", ("podnet_pod_cidrs", "10.91.5.0/25"), host="birch",
         host_vars={"ash": {"podnet_pod_cidrs": "10.91.5.0/25"}, "birch": {"podnet_pod_cidrs": "10.91.5.0/25"}}),
    Case("node claims another node's block", ("podnet_pod_cidrs", "state file"), host="birch",
         host_vars={"birch": {"podnet_pod_cidrs": "10.91.0.0/25"}}),
    Case("unknown fabric", ("podnet_fabric", "wireguard"), host_vars={"ash": {"podnet_fabric": "wireguard"}}),
    Case("l2_bridge uplink missing", ("eth9", "cbr0"), group_vars=L2_BRIDGE,
         host_vars={"ash": {"podnet_uplink": "eth9"}}),
    Case("l2_bridge uplink is the bridge", ("podnet_uplink", "cbr0"), group_vars=L2_BRIDGE,
         host_vars={"ash": {"podnet_uplink": "cbr0"}}),
    Case("l2_bridge uplink is a port of another bridge", ("upl7", "xbr7"), group_vars=L2_BRIDGE,
         host_vars={"ash": {"podnet_uplink": "upl7"}},
         setup=("ash", "ip link add xbr7 type bridge && ip link add upl7 type veth peer name upl7p && ip link set upl7 master xbr7"),
         cleanup=("ash", "ip link del upl7; ip link del xbr7")),
    Case("l2_bridge check address with a prefix", ("podnet_l2_bridge_check_address",), group_vars=L2_BRIDGE,
         host_vars={"ash": {"podnet_l2_bridge_check_address": ["172.27.3.1/24"]}}),
    Case("l2_bridge rollback before the check ends", ("podnet_l2_bridge_rollback_timeout", "5"), group_vars=L2_BRIDGE,
         host_vars={"ash": {"podnet_l2_bridge_rollback_timeout": 4}}),
    Case("unknown runtime", ("podnet_runtimes", "podman"), host_vars={"ash": {"podnet_runtimes": ["docker", "podman"]}}),
    Case("runtimes a string", ("podnet_runtimes",), host_vars={"ash": {"podnet_runtimes": "docker"}}),
    Case("CNI conflist name with a slash", ("podnet_cni_conflist_name",),
         host_vars={"ash": {"podnet_cni_conflist_name": "../../x.conflist"}}),
    Case("CNI network name with a path", ("podnet_cni_network_name",),
         host_vars={"ash": {"podnet_cni_network_name": "../../../etc/podnet"}}),
    Case("service network overlaps the cluster", ("podnet_service_cidrs", CLUSTER),
         group_vars={"podnet_service_cidrs": ["10.91.64.0/18"]}),
    Case("release a node still in the inventory", ("podnet_release_nodes",), host="birch",
         group_vars={"podnet_release_nodes": ["%(lab)s-birch"]}),
    Case("node prefix null", ("podnet_node_prefix_ipv4",), group_vars={"podnet_node_prefix_ipv4": None}),
    Case("state file not YAML", ("podnet_state.yml",), host=None, state_text="nodes: [unclosed\n"),
    Case("state file gives two nodes one block", ("state file", "overlap"), host=None,
         state_text="version: 1\nnodes:\n  %(lab)s-ash: [10.91.0.0/25]\n  %(lab)s-birch: [10.91.0.0/25]\n"),
    Case("state dir relative", ("podnet_state_dir",), host_vars={"ash": {"podnet_state_dir": "etc/podnet"}}),
    Case("sysctl conflicts unknown", ("podnet_sysctl_conflicts",),
         host_vars={"ash": {"podnet_sysctl_conflicts": "maybe"}}),
]


# ---- batches: the validation reports every host's problems of one kind in one failure (the node variables in one
# controller task, the plan role's variables in one, the plan in one, each node's preflight in the same task on every
# node), so cases refused by the same task run together, each on its own node (or in its own variable of a node):
# one inventory, one site run, one snapshot. Each case keeps its own test and its own assertions on that run's
# output, and its evidence must be its own: one message that names the case's node together with every needle of
# the case. When a case's evidence is not in its batch's run, the case runs alone (as before batching), so that a
# failure is the case's own. A case placed on birch has its bad input on birch and must name birch.
#
# Only cases with the same group variables share a run (their nodes see exactly the case's inputs); a cluster-wide
# variable checked per host (podnet_cluster_cidrs, the node prefix, the service networks: the plan role's arithmetic,
# once per distinct value, naming the hosts that have it) is given as each node's own value. The cases refused before
# any task (the state file) or whose bad value is the whole cluster's (the plan of a cluster network against the node
# IPs) run alone.

def on_node(case: Case, node: str) -> Case:
    """The case with its node input (variables, setup and clean-up) on ``node`` instead of ash."""
    if node == case.host:
        return case
    assert case.host == "ash" and set(case.host_vars) <= {"ash"}, case.id

    def moved(step: Optional[Tuple[str, str]]) -> Optional[Tuple[str, str]]:
        return None if step is None else (node if step[0] == "ash" else step[0], step[1])
    return Case(case.id, case.needles, host=node, group_vars=case.group_vars,
                host_vars={node: v for v in case.host_vars.values()}, setup=moved(case.setup),
                cleanup=moved(case.cleanup), state_text=case.state_text)


def cluster_var(case: Case, node: str) -> Case:
    """A case of one cluster-wide variable with its value given as ``node``'s own variable."""
    (name, value), = case.group_vars.items()
    return Case(case.id, case.needles, host=node, host_vars={node: {name: value}})


BATCHES: Dict[str, List[Tuple[str, str]]] = {
    # the node variables: "Check every node's variables" lists every host's problems
    "node variables 1": [("bridge too long", "ash"), ("bridge with slash", "birch"),
                         ("non-masquerade CIDR not a network", "ash"), ("non-masquerade CIDR with host bits", "birch"),
                         ("route protocol a string", "ash"), ("route protocol 0", "birch"),
                         ("bridge MTU 67", "ash"), ("bridge MTU 70000", "birch"),
                         ("CNI conflist name a number", "ash"), ("CNI conflist name with a slash", "birch"),
                         ("unknown runtime", "ash"), ("runtimes a string", "birch"),
                         ("state dir relative", "ash"), ("sysctl conflicts unknown", "birch")],
    "node variables 2": [("bridge with space", "ash"), ("bridge with hash", "birch"),
                         ("non-masquerade CIDRs a number", "ash"), ("non-masquerade CIDRs a string", "birch"),
                         ("route protocol 300", "ash"), ("route protocol boot", "birch"),
                         ("bridge MTU a string", "ash"), ("CNI network name with a path", "birch"),
                         ("unknown fabric", "ash")],
    "node variables 3": [("bridge leading dash", "ash"), ("bridge command substitution", "birch"),
                         ("route protocol static", "ash")],
    "node variables 4": [("bridge semicolon", "ash"), ("bridge non-ASCII", "birch")],
    "node variables 5": [("bridge number", "ash"), ("bridge empty", "birch")],
    "node variables, l2_bridge": [("l2_bridge uplink is the bridge", "ash"),
                                  ("l2_bridge check address with a prefix", "ash"),
                                  ("l2_bridge rollback before the check ends", "ash")],
    # the plan role's variables: "Check the role variables of every host", per distinct value
    "cluster variables 1": [("cluster CIDR with a space", "ash*"), ("cluster CIDR with host bits", "birch*")],
    "cluster variables 2": [("cluster CIDR with host bits, /21", "ash*"), ("cluster CIDR prefix 33", "birch*")],
    "cluster variables 3": [("cluster CIDRs empty list", "ash*"), ("cluster CIDRs null", "birch*")],
    "cluster variables 4": [("cluster CIDRs a number", "ash*"), ("two IPv4 cluster networks", "birch*")],
    "cluster variables 5": [("node prefix a string", "ash*"), ("node prefix 31", "birch*"),
                            ("service network overlaps the cluster", "birch*")],
    "cluster variables 6": [("node prefix 0", "ash*"), ("node prefix null", "birch*")],
    # the plan: every node's IP and pod subnet claims
    "plan 1": [("node IP a number", "ash"), ("pod CIDR with host bits", "ash"),
               ("node claims another node's block", "birch")],
    "plan 2": [("pod CIDR outside the cluster", "ash"), ("duplicate node IPs", "birch"),
               ("pod CIDR of the wrong family", "birch")],
    "plan 3": [("node IP with a space", "ash"), ("node IP inside the cluster network", "birch"),
               ("two nodes claim the same block", "birch")],
    # the preflight: every node checks itself in the same task
    # (a node's routes and addresses inside the cluster network are told together, and with a stray gateway)
    "preflight 1": [("foreign route inside the cluster network", "ash"),
                    ("local address inside the cluster network", "ash"),
                    ("foreign route for a peer's pod subnet", "ash"), ("stray pod gateway on the bridge", "ash"),
                    ("daemon.json not JSON", "birch")],
    "preflight 2": [("daemon.json not an object", "ash"), ("daemon.json with bip", "birch")],
    "preflight 3": [("daemon.json with ipv6", "ash"), ("daemon.json with fixed-cidr-v6", "birch")],
    "preflight 4": [("sysctl file turns forwarding off at boot", "ash"), ("node record of a newer version", "birch")],
    "preflight 5": [("bridge is an existing veth link", "ash"), ("node record not JSON", "birch")],
    "preflight 6": [("route protocol dhcp", "ash"), ("route protocol bgp", "birch")],
    "preflight, l2_bridge": [("l2_bridge uplink missing", "ash"), ("l2_bridge uplink is a port of another bridge", "birch")],
}
FRESH_BATCHES: Dict[str, List[Tuple[str, str]]] = {
    "node variables": [("bridge command substitution", "ash"), ("unknown fabric", "ash"), ("bridge too long", "birch")],
    "cluster variables": [("cluster CIDR with host bits, /21", "ash*"), ("cluster CIDR prefix 33", "birch*")],
    "preflight 1": [("foreign route inside the cluster network", "ash"), ("daemon.json with bip", "birch")],
    "preflight 2": [("sysctl file turns forwarding off at boot", "ash"), ("route protocol dhcp", "birch")],
}
BY_ID = {c.id: c for c in CASES}


def placed(batches: Dict[str, List[Tuple[str, str]]]) -> Dict[str, Tuple[str, Case]]:
    """{case id: (batch, the case as placed in it)}; a node marked * takes a cluster-wide variable as its own."""
    found: Dict[str, Tuple[str, Case]] = {}
    for name, members in batches.items():
        for cid, node in members:
            assert cid not in found, "%s is in two batches" % cid
            case = BY_ID[cid]
            found[cid] = (name, cluster_var(case, node[:-1]) if node.endswith("*") else on_node(case, node))
    return found


PLACED = placed(BATCHES)
FRESH_PLACED = placed(FRESH_BATCHES)


@dataclass
class Outcome:
    returncode: int
    out: str
    before: Dict[str, str]
    changes: str
    state_exists: bool


def merged(lab: Lab, cases: List[Case]) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
    """The group and host variables of the cases together; no two cases may set the same one differently."""
    group_vars: Dict[str, Any] = {}
    host_vars: Dict[str, Dict[str, Any]] = {}
    for case in cases:
        gv = {k: [x % {"lab": lab.name} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v
              for k, v in case.group_vars.items()}
        for k, v in gv.items():
            assert group_vars.get(k, v) == v, "%s: group variable %s set twice" % (case.id, k)
            group_vars[k] = v
        for node, hv in case.host_vars.items():
            for k, v in hv.items():
                assert k not in host_vars.get(node, {}), "%s: %s of %s set twice" % (case.id, k, node)
                host_vars.setdefault(node, {})[k] = v
    assert all(c.group_vars == cases[0].group_vars for c in cases), "the batch's cases differ in group variables"
    return group_vars, host_vars


def fresh_steps(case: Case) -> Tuple[Optional[Tuple[str, str]], List[Tuple[str, str]]]:
    """A case's setup and clean-up on the fresh lab: there is no daemon.json yet, the case's file is made whole."""
    setup, cleanup = case.setup, [case.cleanup] if case.cleanup else []
    if setup and DAEMON in setup[1]:
        setup = (setup[0], "mkdir -p /etc/docker && printf '{\"bip\": \"172.17.0.1/16\"}\\n' > %s && cp -p %s %s.bak"
                 % (DAEMON, DAEMON, DAEMON))
        cleanup.append((setup[0], "rm -f %s" % DAEMON))
    return setup, cleanup


def refused_run(lab: Lab, cases: List[Case], fresh: bool = False) -> Outcome:
    """One site run with every case's bad input in place (and removed again after it)."""
    group_vars, host_vars = merged(lab, cases)
    inv = write_inventory(lab, group_vars, host_vars)
    assert sum(c.state_text is not None for c in cases) <= 1
    saved_state = None if fresh else state_path(lab).read_text()
    cleanups: List[Tuple[str, str]] = []
    try:
        for case in cases:
            setup, cleanup = fresh_steps(case) if fresh else (case.setup, [case.cleanup] if case.cleanup else [])
            cleanups[:0] = cleanup  # the last case's first
            if setup:
                node_sh(lab, *setup)
            if case.state_text is not None:
                state_path(lab).write_text(case.state_text % {"lab": lab.name})
        before = snapshot(lab)
        proc = site(lab, inv)
        after = snapshot(lab)
        exists = state_path(lab).exists()
    finally:
        failed = []
        for step in cleanups:
            try:
                node_sh(lab, *step)
            except AssertionError as exc:
                failed.append(str(exc))
        if saved_state is not None:
            state_path(lab).write_text(saved_state)
        assert not failed, "clean-up failed: %s" % failed
    return Outcome(proc.returncode, proc.stdout + proc.stderr, before, rootns.diff(before, after), exists)


def failure_messages(out: str) -> List[str]:
    """Each problem the failed results told (msg lines, errors, argument_errors), without the ``fatal: [host]`` prefix."""
    items: List[str] = []
    text = failure_text(out)
    for block in re.split(r"^(?=(?:fatal|failed): \[)", text, flags=re.M):
        if not re.match(r"^(fatal|failed): \[", block):
            continue
        first, _sep, rest = block.partition("\n")
        head = first.split("=>", 1)[1] if "=>" in first else ""
        data: Any = None
        try:
            data = yaml.safe_load(head + "\n" + textwrap.dedent(rest))
        except yaml.YAMLError:
            pass
        if not isinstance(data, dict):
            items.append(" ".join(block.split()))
            continue
        for key in ("msg", "errors", "argument_errors"):
            value = data.get(key)
            for one in value if isinstance(value, list) else [value] if value else []:
                items.extend(str(one).splitlines())
    return items


def problem(lab: Lab, case: Case, outcome: Outcome, own: bool = False, fresh: bool = False) -> Optional[str]:
    """What is wrong with the case's refusal in ``outcome``, or None. ``own``: the evidence must be one message
    naming the case's node with every needle (the run held other cases too)."""
    out = outcome.out
    if outcome.returncode == 0:
        return "the run did not fail:\n%s" % out[-3000:]
    if "Traceback" in out:
        return out[-6000:]
    said = failure_text(out)
    for needle in case.needles:
        if needle not in said:
            return "%r not in the failure message:\n%s" % (needle, said[-4000:] or out[-4000:])
    if case.host:
        host = "%s-%s" % (lab.name, case.host)
        messages = "\n".join(re.sub(r"^(fatal|failed): \[[^\]]*\]", "", line) for line in said.splitlines())
        if host not in messages:
            return "the failure message does not name %s:\n%s" % (host, said[-4000:])
        if own and not any(host in m and all(n in m for n in case.needles) for m in failure_messages(out)):
            return "no one message names %s with %s:\n%s" % (host, case.needles, said[-4000:])
    if outcome.changes:
        return "the refused run changed something:\n%s" % outcome.changes[:6000]
    if fresh:
        if outcome.state_exists:
            return "the refused run wrote the state file %s" % state_path(lab)
        for node in lab.nodes:
            if "etc/podnet" in outcome.before["%s: files" % node]:
                return "%s holds etc/podnet before the run" % node
    return None


_RUNS: Dict[Tuple[str, str], Outcome] = {}


def check_case(lab: Lab, case: Case, batches: Dict[str, List[Tuple[str, str]]],
               where: Dict[str, Tuple[str, Case]], fresh: bool = False) -> None:
    """The case's assertions on its batch's run (made once, by the batch's first case); alone when not batched, or
    when that run does not show the case's own evidence."""
    if case.id in where and len(batches[where[case.id][0]]) > 1:
        name, mine = where[case.id]
        key = (lab.name, name)
        if key not in _RUNS:
            _RUNS[key] = refused_run(lab, [c for b, c in where.values() if b == name], fresh)
        why = problem(lab, mine, _RUNS[key], own=True, fresh=fresh)
        if why is None:
            return
        warnings.warn("case %r: not shown by the run of the batch %r (%s); it runs alone"
                      % (case.id, name, why.splitlines()[0]))
    why = problem(lab, case, refused_run(lab, [case], fresh), fresh=fresh)
    assert why is None, "case %r: %s" % (case.id, why)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_nothing_changes(lab: Lab, case: Case):
    check_case(lab, case, BATCHES, PLACED)


def test_the_lab_still_converges_to_nothing_to_do(lab: Lab):
    """After every refused case (and its clean-up) the lab is exactly as converged."""
    proc = site(lab, write_inventory(lab, {}, {}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]


# ---- a few cases on a lab that was never converged: nothing of podnet.cluster appears, no state file

FRESH_CASES = [c for c in CASES if c.id in (
    "bridge command substitution", "foreign route inside the cluster network", "daemon.json with bip",
    "duplicate node IPs", "route protocol dhcp", "sysctl file turns forwarding off at boot",
    # before any node is asked anything (a fresh lab's nodes are asked what they hold): no module names them
    "cluster CIDR with host bits, /21", "cluster CIDR prefix 33", "unknown fabric", "bridge too long")]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, request) -> Lab:
    spec = new_lab("pbf", tmp_path_factory.mktemp("fresh") / "lab", request, node_names=NAMES,
                   lab_vars=lab_vars("198.18.28.0/24"))
    spec.build()
    settled(spec.nodes)  # "before" and "after" compare settled nodes
    return spec


@pytest.mark.parametrize("case", FRESH_CASES, ids=[c.id for c in FRESH_CASES])
def test_bad_input_on_a_fresh_lab_leaves_nothing(fresh: Lab, case: Case):
    check_case(fresh, case, FRESH_BATCHES, FRESH_PLACED, fresh=True)
