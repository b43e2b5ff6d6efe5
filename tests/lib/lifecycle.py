# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The lifecycle lab and its helpers, shared by the lifecycle modules (test_lifecycle.py, test_lifecycle_runtimes.py,
test_lifecycle_settings.py): each module builds a lab of its own, named nodes, dual stack, /26 blocks, both
runtimes, so that they run side by side. Also: the boot unit's lines, a node's kernel state of a reboot, the
setting changes every module converges through, and a stand-in docker service."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

from lib.labtools import Lab, new_lab
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
    spec.playbook("present")
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


TRANSITIONS = [
    ("runtimes [cni]", [{"podnet_runtimes": ["cni"]}]),
    ("runtimes [docker]", [{"podnet_runtimes": ["docker"]}]),
    ("runtimes [cni] then [docker]", [{"podnet_runtimes": ["cni"]}, {"podnet_runtimes": ["docker"]}]),
    ("masquerade off", [{"podnet_masquerade": False}]),
    ("renamed bridge", [{"podnet_bridge": "pbr7"}]),
    ("IPv4 only", [{"podnet_cluster_cidrs": CLUSTERS[:1], "podnet_allow_readdress": True}]),
    ("extra non-masquerade network", [{"podnet_nonmasquerade_cidrs": ["192.168.240.0/20"]}]),
    # the lab router (group podnet_lab_router) carries the routes: a router fabric with nobody is refused
    ("routed fabric (no peer routes)", [{"podnet_fabric": "router", "podnet_router_group": "podnet_lab_router"}]),
]


# The fresh default state of each lab (and router group), made once: {(lab name, router group): states}
FRESH_DEFAULTS: Dict[Tuple[str, str], Dict[str, dict]] = {}


def fresh_state(lab: Lab, keep: Dict[str, str], settings: Dict[str, object]) -> Dict[str, dict]:
    """Every node's state after a teardown and a converge with ``settings``: what a fresh converge gives."""
    playbook(lab, "teardown", **keep)
    playbook(lab, "site", **settings)
    return {n: node_state(lab, n) for n in lab.nodes}


def converge_through(lab: Lab, label: str, changes) -> None:
    """Every state a change reaches equals what a fresh converge with its settings gives (after a teardown):
    nothing an earlier setting made is left behind, going back to the default included, and each change is
    idempotent. The transitions: the last change -> default -> the first change -> ... -> the last change.

    The fresh converges are made first (the last one is where the case starts from), and the fresh default
    once per lab (and router group): a converge with the same settings gives the same state whatever ran
    before, which is what the case asserts."""
    # a router group stays in every run of the case, so that leaving the fabric and teardown clean the router too
    keep = {k: v for c in changes for k, v in c.items() if k == "podnet_router_group"}
    key = (lab.name, keep.get("podnet_router_group", ""))
    if key not in FRESH_DEFAULTS:
        FRESH_DEFAULTS[key] = fresh_state(lab, keep, keep)
    fresh = [fresh_state(lab, keep, change) for change in changes]

    back = {"podnet_allow_readdress": True} if any("podnet_cluster_cidrs" in c for c in changes) else {}
    playbook(lab, "site", **dict(back, **keep))
    for n in lab.nodes:
        assert_same(node_state(lab, n), FRESH_DEFAULTS[key][n], "%s: going back to the default left debris"
                    % label)
    for change, moved in zip(changes, fresh):
        playbook(lab, "site", **change)
        for n in lab.nodes:
            assert_same(node_state(lab, n), moved[n], "%s (%s): the change left something a fresh converge does "
                        "not have" % (label, change))
        assert unchanged(playbook(lab, "site", **change)), "%s: not idempotent" % label
    if keep:
        playbook(lab, "teardown", **keep)     # the router without routes of ours again, as the case found it


STUB_SERVICE = """#!/bin/sh
# A stand-in docker service for the lab (SysV script): logs each restart with its start and end time, and strips
# the bridge's global IPv6 addresses as dockerd does when it starts.
LOG=%(log)s
case "$1" in
  status) exit 0 ;;
  restart)
    echo "$(hostname) begin $(date +%%s.%%N)" >> "$LOG"
    sleep 1
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
