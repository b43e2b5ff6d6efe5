# SPDX-License-Identifier: Apache-2.0
"""Helpers of the gce_routes tests: a stand-in with three lab VMs, and the real module run by ansible-playbook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from lib import forkserver
from lib.gce_standin import GceStandIn

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PROJECT = "podnet-lab"
TOKEN = "podnet-test-token"
NETWORK = "lab-net"
NET_PATH = "projects/%s/global/networks/%s" % (PROJECT, NETWORK)
MARKER = "podnet.cluster pod route (podnet)"
NODES = {
    "node1": {"zone": "lab-a", "ip": "10.10.0.11", "ip6": "fd10::11"},
    "node2": {"zone": "lab-a", "ip": "10.10.0.12", "ip6": "fd10::12"},
    "node3": {"zone": "lab-b", "ip": "10.10.0.13", "ip6": "fd10::13"},
}
CIDRS = {
    "node1": ["10.244.1.0/24", "fd00:244:0:1::/64"],
    "node2": ["10.244.2.0/24", "fd00:244:0:2::/64"],
    "node3": ["10.244.3.0/24", "fd00:244:0:3::/64"],
}
NAMES = {
    "node1": ["podnet-10-244-1-0-24", "podnet-fd00-244-0-1---64"],
    "node2": ["podnet-10-244-2-0-24", "podnet-fd00-244-0-2---64"],
    "node3": ["podnet-10-244-3-0-24", "podnet-fd00-244-0-3---64"],
}

PLAY = """
- name: Fabric routes of the cluster
  hosts: podnet_nodes
  gather_facts: false
  tasks:
    - name: Compute Engine routes for every node's pod subnets
      podnet.cluster.gce_routes: {args}
      run_once: true
      delegate_to: localhost
"""


def make_standin(**kwargs: Any) -> GceStandIn:
    standin = GceStandIn(project=PROJECT, token=TOKEN, **kwargs)
    for node, info in NODES.items():
        standin.add_instance(node, zone=info["zone"], network=NETWORK, network_ip=info["ip"],
                             ipv6_address=info["ip6"])
    return standin


class GceRun:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        self.rc = proc.returncode
        try:
            self.json = json.loads(proc.stdout)
        except ValueError:
            self.json = None
        self.result: Dict[str, Any] = {}
        if self.json:
            hosts = self.json["plays"][0]["tasks"][0]["hosts"]
            self.result = next(iter(hosts.values()), {})

    @property
    def text(self) -> str:
        return "rc=%d\n%s\n%s" % (self.rc, self.proc.stdout[-8000:], self.proc.stderr[-3000:])

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def msg(self) -> str:
        return str(self.result.get("msg", ""))


def run_gce(tmp_path: Path, standin: GceStandIn, args: Optional[Dict[str, Any]] = None,
            cidrs: Optional[Dict[str, List[str]]] = None, host_vars: Optional[Dict[str, Dict[str, Any]]] = None,
            check: bool = False, diff: bool = False) -> GceRun:
    """Run the real module once, run_once + delegate_to localhost, on an inventory of lab nodes."""
    cidrs = CIDRS if cidrs is None else cidrs
    hosts = {}
    for node in cidrs:
        hv = {"ansible_connection": "local", "podnet_gce_zone": NODES.get(node, {}).get("zone", "lab-a")}
        hv.update((host_vars or {}).get(node, {}))
        hosts[node] = hv
    group_vars = {"podnet_plan": {"nodes": {n: {"pod_cidrs": c} for n, c in cidrs.items()}}}
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"podnet_nodes": {"hosts": hosts, "vars": group_vars}}}}))
    module_args: Dict[str, Any] = {
        "project": PROJECT,
        "network": NETWORK,
        "routes": "{{ podnet_plan | podnet.cluster.gce_route_specs(hostvars) }}",
        "auth_kind": "accesstoken",
        "access_token": TOKEN,
        "api_endpoint": standin.endpoint,
        "retry_deadline": 20,
        "operation_timeout": 30,
    }
    for key, value in (args or {}).items():
        if value is None:
            module_args.pop(key, None)
        else:
            module_args[key] = value
    playbook = tmp_path / "gce.yml"
    playbook.write_text(PLAY.format(args=json.dumps(module_args)))
    argv = [ANSIBLE_PLAYBOOK, "-i", str(inv), str(playbook)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
               ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="False",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONDONTWRITEBYTECODE="1")
    proc = forkserver.run(argv, cwd=REPO, env=env, timeout=300)
    return GceRun(proc)


def route_summary(standin: GceStandIn) -> Dict[str, tuple]:
    """{name: (destRange, instance name, priority, description)} of the stand-in's routes."""
    out = {}
    for name, r in standin.route_table().items():
        out[name] = (r["destRange"], (r.get("nextHopInstance") or "").rsplit("/", 1)[-1], r["priority"],
                     r.get("description", ""))
    return out


def wanted_summary(cidrs: Optional[Dict[str, List[str]]] = None, instances: Optional[Dict[str, str]] = None):
    cidrs = CIDRS if cidrs is None else cidrs
    out = {}
    for node, ranges in cidrs.items():
        for cidr in ranges:
            name = "podnet-" + cidr.replace(".", "-").replace(":", "-").replace("/", "-")
            out[name] = (cidr, (instances or {}).get(node, node), 1000, MARKER)
    return out
