# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The lifecycle lab and its helpers, shared by the lifecycle modules (test_lifecycle.py, test_lifecycle_runtimes.py,
test_lifecycle_settings.py): each module builds a lab of its own, named nodes, dual stack, /26 blocks, both
runtimes, so that they run side by side. Also: the boot unit's lines, a node's kernel state of a reboot, the
rounds of setting changes (converge_round) and a stand-in docker service."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import yaml

from lib import rootns
from lib.labtools import BIN, Lab, new_lab, recap, run
from lib.nodestate import assert_same, node_state, playbook, unchanged

CLUSTERS = ["10.77.0.0/18", "fd00:77::/56"]


def build_lab(prefix: str, tmp_path_factory, request) -> Lab:
    """The lifecycle lab, named <prefix><pid> and removed at the end of the module: each lifecycle module builds
    its own, so that they run side by side."""
    spec = new_lab(prefix, tmp_path_factory.mktemp(prefix) / "lab", request, node_names=["red", "green"],
                   lab_vars={"podnet_lab_subnet": "172.26.9.0/24",
                             "podnet_lab_subnet_ipv6": "fd00:26:9::/64",
                             "podnet_lab_external_cidr": "198.18.9.0/24",
                             "podnet_lab_external_cidr_ipv6": "fd00:198:9::/64",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": CLUSTERS,
                                                           "podnet_node_prefix_ipv4": 26,
                                                           "podnet_runtimes": ["docker", "cni"]}})
    spec.build()
    PRISTINE[spec.name] = states(spec)
    return spec


def unit_line(text: str, key: str):
    """(command, failure ignored) of a unit's ``key=`` line as systemd reads it: the prefixes ``-`` (a failure
    is recorded but does not fail the unit), ``@``, ``:``, ``+``, ``!`` are taken off the command."""
    line = re.search(r"^%s=(.*)$" % key, text, re.M).group(1)
    ignored = False
    while line[:1] in ("-", "@", ":", "+", "!"):
        ignored = ignored or line[0] == "-"
        line = line[1:]
    return line, ignored


def boot_lines(lab: Lab, node: str):
    """The boot unit's ExecStart and the Docker drop-in's ExecStartPost, as written on the node."""
    units = Path(lab.node_root(node), "upper/etc/systemd/system")
    return (unit_line((units / "podnet-cluster.service").read_text(), "ExecStart"),
            unit_line((units / "docker.service.d" / "10-podnet-cluster.conf").read_text(), "ExecStartPost"))


def wipe(host, bridge="cbr0"):
    """The kernel state of a reboot: no bridge, no route of ours, no chain of ours, forwarding off. Files stay."""
    host.check_output("ip link del %s" % bridge)
    host.check_output("ip route flush proto 158")
    host.check_output("ip -6 route flush proto 158")
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat"):
            for line in host.check_output("%s-save -t %s" % (tool, table)).splitlines():
                if "podnet.cluster" in line and line.startswith("-A "):
                    host.check_output("%s -t %s -D %s" % (tool, table, line[3:]))
        for table, chain in (("filter", "PODNET-FORWARD"), ("nat", "PODNET-MASQ")):
            host.check_output("%s -t %s -F %s && %s -t %s -X %s" % (tool, table, chain, tool, table, chain))
    host.check_output("sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0")


def kernel_of(state):
    """A node_state without its files (a test's own extra file there is no difference in the kernel)."""
    return {k: v for k, v in state.items() if k not in ("files",)}


def gateways(lab: Lab, node: str):
    state = yaml.safe_load((lab.inventory_dir / ".podnet_state.yml").read_text())["nodes"]
    return ["%s/%d" % (ipaddress.ip_network(c)[1], ipaddress.ip_network(c).prefixlen) for c in state[node]]


class Case(NamedTuple):
    """A setting case: ``steps``, the settings of each change in turn (default -> each step -> default), on the
    node ``node`` (its suffix, as host variables of that node alone) or on every node (``node`` None, as extra
    variables)."""
    label: str
    steps: List[Dict[str, object]]
    node: Optional[str] = None


# The fresh default state of each lab, made once: {lab name: {node: state}}. A router group in the run makes no
# difference to a node (its document does not name the routers).
FRESH_DEFAULTS: Dict[str, Dict[str, dict]] = {}
# Each lab's node states right after it was built (what a teardown gives back): {lab name: {node: state}}
PRISTINE: Dict[str, Dict[str, dict]] = {}
# Where the last converge_round of a lab left it: {lab name: (the round's labels, {node: state})}
LAST_ROUND: Dict[str, Tuple[str, Dict[str, dict]]] = {}


def states(lab: Lab) -> Dict[str, dict]:
    return {n: node_state(lab, n) for n in lab.nodes}


def is_at(lab: Lab, expected: Optional[Dict[str, dict]]) -> bool:
    """Whether every node's state is ``expected`` (a state a test may start from instead of converging to it)."""
    return expected is not None and all(not rootns.diff(node_state(lab, n), expected[n]) for n in lab.nodes)


def ensure_default(lab: Lab) -> None:
    """The lab converged with the default settings: when every node's state already is the fresh default (what
    the previous test left), nothing runs; otherwise a site run."""
    if not is_at(lab, FRESH_DEFAULTS.get(lab.name)):
        playbook(lab, "site")


def run_settings(lab: Lab, name: str, common: Dict[str, object], per_node: Dict[str, Dict[str, object]]):
    """A playbook run with ``common`` as extra variables and ``per_node`` ({node: settings}) as host variables
    of those nodes (an inventory beside hosts.yml, with the same state file)."""
    per_node = {n: s for n, s in per_node.items() if s}
    if not per_node:
        return playbook(lab, name, **common)
    inv = yaml.safe_load(lab.hosts_yml.read_text())
    nodes = inv["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]
    for node, settings in per_node.items():
        nodes["hosts"][node].update(settings)
    nodes["vars"]["podnet_state_file"] = str(lab.inventory_dir / ".podnet_state.yml")
    inventory = lab.inventory_dir / "per-node.yml"
    inventory.write_text(yaml.safe_dump(inv))
    argv = [str(BIN / "ansible-playbook"), "podnet.cluster.%s" % name, "-i", str(inventory)]
    return run(argv + (["-e", json.dumps(common)] if common else []), cwd=lab.repo)


def fresh_state(lab: Lab, keep: Dict[str, str], common, per_node) -> Dict[str, dict]:
    """Every node's state after a teardown and a converge with these settings: what a fresh converge gives. The
    teardown is left out on a lab as it was built (what a teardown gives back), unless a router is in the run."""
    if keep or not is_at(lab, PRISTINE.get(lab.name)):
        playbook(lab, "teardown", **keep)
    run_settings(lab, "site", dict(common, **keep), per_node)
    return states(lab)


def converge_round(lab: Lab, cases: List[Case]) -> None:
    """Every state a change reaches equals what a fresh converge with its settings gives (after a teardown):
    nothing an earlier setting made is left behind, going back to the default included, and each change is
    idempotent. The transitions: the last step -> default -> the first step -> ... -> the last step.

    Several cases go in one round when each node has one case, or cases that change different things: every
    node's state is compared on its own, and each message names the node and its case(s). A case on a node
    (``Case.node``) runs as host variables of that node only.

    The fresh converges are made first (the last one is where the round starts from), and the fresh default
    once per lab: a converge with the same settings gives the same state whatever ran before, which is what the
    round asserts. The lab stays in the last step's state (LAST_ROUND: a test may go on from it)."""
    count = len(cases[0].steps)
    assert all(len(c.steps) == count for c in cases), "the cases of a round have as many steps each"

    def on(node):
        return [c for c in cases if c.node is None or node == "%s-%s" % (lab.name, c.node)]

    def named(node):
        return "%s (%s)" % (node, " + ".join(c.label for c in on(node)) or "default")

    def settings(i):
        common = {k: v for c in cases if c.node is None for k, v in c.steps[i].items()}
        per_node = {n: {k: v for c in on(n) if c.node is not None for k, v in c.steps[i].items()} for n in lab.nodes}
        return common, per_node

    def step_of(node, i):
        return "{%s}" % ", ".join("%s: %s" % (k, json.dumps(v)) for c in on(node) for k, v in c.steps[i].items())

    # a router group stays in every run of the round, so that leaving the fabric and teardown clean the router too
    keep = {k: v for c in cases for s in c.steps for k, v in s.items() if k == "podnet_router_group"}
    if lab.name not in FRESH_DEFAULTS:
        FRESH_DEFAULTS[lab.name] = fresh_state(lab, {}, {}, {})
    fresh = [fresh_state(lab, keep, *settings(i)) for i in range(count)]

    back = {"podnet_allow_readdress": True} if any("podnet_cluster_cidrs" in s for c in cases for s in c.steps) \
        else {}
    playbook(lab, "site", **dict(back, **keep))
    for n in lab.nodes:
        assert_same(node_state(lab, n), FRESH_DEFAULTS[lab.name][n], "%s: going back from %s to the default left "
                    "debris" % (named(n), step_of(n, count - 1)))
    for i in range(count):
        common, per_node = settings(i)
        run_settings(lab, "site", dict(common, **keep), per_node)
        for n in lab.nodes:
            assert_same(node_state(lab, n), fresh[i][n], "%s: the change to %s (from %s) left something a fresh "
                        "converge does not have" % (named(n), step_of(n, i), step_of(n, i - 1) if i else "default"))
        proc = run_settings(lab, "site", dict(common, **keep), per_node)
        assert unchanged(proc), "not idempotent at %s: %s" % (
            "; ".join("%s %s" % (named(n), step_of(n, i)) for n in lab.nodes),
            {h: c for h, c in recap(proc.stdout).items() if c["changed"] or c["failed"]})
    LAST_ROUND[lab.name] = (" + ".join(c.label for c in cases), states(lab))


STUB_SERVICE = """#!/bin/sh
# A stand-in docker service for the lab (SysV script): logs each restart with its start and end time, and strips
# the bridge's global IPv6 addresses as dockerd does when it starts.
LOG=%(log)s
case "$1" in
  status) exit 0 ;;
  restart)
    echo "$(hostname) begin $(date +%%s.%%N)" >> "$LOG"
    sleep 3  # long enough that the restarts of one batch overlap even on a loaded machine
    for a in $(ip -6 -o addr show dev %(bridge)s scope global | awk '{print $4}'); do ip addr del "$a" dev %(bridge)s; done
    echo "$(hostname) end $(date +%%s.%%N)" >> "$LOG"
    ;;
  *) exit 0 ;;
esac
"""


def stub_docker_service(lab: Lab, log: Path, nodes=None) -> List[Path]:
    """Give ``nodes`` (every node of the lab by default) the stand-in docker service (STUB_SERVICE) that logs each
    restart to ``log``; returns the scripts written (for the test to remove)."""
    scripts = []
    for n in nodes or lab.nodes:
        script = Path(lab.node_root(n), "upper/etc/init.d/docker")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(STUB_SERVICE % {"log": log, "bridge": "cbr0"})
        script.chmod(0o755)
        scripts.append(script)
    return scripts
