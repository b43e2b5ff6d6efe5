# SPDX-License-Identifier: Apache-2.0
"""The real podnet.cluster.plan role, run by ansible-playbook on a localhost inventory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import yaml

from lib import forkserver
from lib.labtools import BIN

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")

PLAYBOOK = """
- name: Plan
  hosts: podnet_nodes
  gather_facts: false
  any_errors_fatal: true
  roles:
    - podnet.cluster.plan
  tasks:
    - name: Report the facts the role set
      ansible.builtin.debug:
        msg:
          podnet_node: "{{ podnet_node }}"
          podnet_plan: "{{ podnet_plan }}"
"""


class Run:
    def __init__(self, proc, state_path):
        self.proc = proc
        self.rc = proc.returncode
        self.state_path = state_path
        try:
            self.json = json.loads(proc.stdout)
        except ValueError:
            self.json = None

    @property
    def text(self):
        return self.proc.stdout + self.proc.stderr

    def task_results(self, name):
        for play in self.json["plays"]:
            for task in play["tasks"]:
                if task["task"]["name"].split(" : ")[-1] == name:
                    return task["hosts"]
        raise KeyError(name)

    def facts(self):
        return {h: r["msg"] for h, r in self.task_results("Report the facts the role set").items()}

    def changed(self):
        return sum(s["changed"] for s in self.json["stats"].values())

    def failure_text(self):
        out = []
        for play in self.json["plays"]:
            for task in play["tasks"]:
                for result in task["hosts"].values():
                    if result.get("failed"):
                        out.append(result.get("msg", ""))
        return "\n".join(out)


def run_plan(tmp_path: Path, hosts: dict, group_vars: dict | None = None, args=(), state_name=".podnet_state.yml",
             before: str = ""):
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    for host in hosts.values():
        host.setdefault("ansible_connection", "local")
        host.setdefault("ansible_python_interpreter", sys.executable)
    group_vars = dict(group_vars or {})
    (inv / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"podnet_nodes": {"hosts": hosts, "vars": group_vars}}}}))
    playbook = tmp_path / "plan.yml"
    playbook.write_text(before + PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
               ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    proc = forkserver.run([ANSIBLE_PLAYBOOK, "-i", str(inv), str(playbook), *args], cwd=REPO, env=env, timeout=300)
    return Run(proc, inv / state_name)


def three_nodes(**extra):
    hosts = {f"node{i}": {"podnet_node_ip": f"172.31.9.{10 + i}/24"} for i in (1, 2, 3)}
    for name, values in extra.items():
        hosts.setdefault(name, {}).update(values)
    return hosts


def read_state(path: Path):
    return yaml.safe_load(path.read_text())


def test_plan_records_state_and_sets_facts(tmp_path):
    hosts = {f"node{i}": {"podnet_node_ip": [f"172.31.9.{10 + i}/24", f"fd31::{i}/64"]} for i in (1, 2, 3)}
    run = run_plan(tmp_path, hosts, {"podnet_cluster_cidrs": ["10.60.0.0/20", "fd00:60::/60"],
                                     "podnet_node_prefix_ipv4": 26})
    assert run.rc == 0, run.text
    state = read_state(run.state_path)
    assert state["nodes"] == {
        "node1": ["10.60.0.0/26", "fd00:60::/64"],
        "node2": ["10.60.0.64/26", "fd00:60:0:1::/64"],
        "node3": ["10.60.0.128/26", "fd00:60:0:2::/64"],
    }
    facts = run.facts()
    assert facts["node2"]["podnet_node"]["pod_cidrs"] == ["10.60.0.64/26", "fd00:60:0:1::/64"]
    assert facts["node2"]["podnet_node"]["gateways"] == ["10.60.0.65", "fd00:60:0:1::1"]
    assert facts["node2"]["podnet_node"]["bridge_addresses"] == ["10.60.0.65/26", "fd00:60:0:1::1/64"]
    assert facts["node3"]["podnet_plan"]["nodes"]["node1"]["node_ips"] == ["172.31.9.11", "fd31::1"]
    assert facts["node1"]["podnet_plan"]["node_cidrs"] == ["172.31.9.0/24", "fd31::/64"]

    mtime = run.state_path.stat().st_mtime_ns
    again = run_plan(tmp_path, hosts, {"podnet_cluster_cidrs": ["10.60.0.0/20", "fd00:60::/60"],
                                       "podnet_node_prefix_ipv4": 26})
    assert again.rc == 0 and again.changed() == 0, again.text
    assert run.state_path.stat().st_mtime_ns == mtime


# An earlier play of the same run left node2 a probe result that claims node1's block (as a registered result of the
# adoption probe would, had node2 been asked then). node2 is recorded now, so it is not asked in this run: what it
# "held" before must not count (it would be a conflict with node1).
STALE_PROBE = """
- name: An earlier probe result
  hosts: node2
  gather_facts: false
  tasks:
    - name: Leave a probe result behind
      ansible.builtin.set_fact:
        __podnet_held: {held: {recorded: ["10.60.0.0/26"], gateways: []}}
"""


def test_what_a_node_held_counts_only_when_it_was_asked_in_this_run(tmp_path):
    group_vars = {"podnet_cluster_cidrs": ["10.60.0.0/20"], "podnet_node_prefix_ipv4": 26}
    first = run_plan(tmp_path, three_nodes(), group_vars)
    assert first.rc == 0, first.text
    recorded = read_state(first.state_path)["nodes"]
    assert recorded["node1"] == ["10.60.0.0/26"]

    again = run_plan(tmp_path, three_nodes(), group_vars, before=STALE_PROBE)
    assert again.rc == 0, again.text
    assert read_state(again.state_path)["nodes"] == recorded
    assert again.facts()["node2"]["podnet_node"]["pod_cidrs"] == recorded["node2"]


def ran(run, name):
    """The hosts on which the task ``name`` ran (not skipped); none when no host included it."""
    try:
        return {h for h, r in run.task_results(name).items() if not r.get("skipped")}
    except KeyError:
        return set()


GATHER = "Gather network facts where no node IP is known"
PROBE = "Ask this node which pod subnets it already holds"


def local_addresses():
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return {a["local"] for link in json.loads(out) for a in link.get("addr_info", [])}


def test_only_the_nodes_that_must_be_asked_are_asked(tmp_path):
    """One include on every host; inside, facts are gathered only where no node IP (nor fact) is known, and only
    the nodes the state file does not record are probed (with podnet_plan_adopt)."""
    group_vars = {"podnet_cluster_cidrs": ["10.61.0.0/20"], "podnet_node_prefix_ipv4": 26}
    first = run_plan(tmp_path, three_nodes(), group_vars)
    assert first.rc == 0, first.text
    assert ran(first, GATHER) == set()
    assert ran(first, PROBE) == {"node1", "node2", "node3"}  # a new state file records nobody

    # node4: no node IP, so its facts are gathered (a local connection: this machine's own, read only) and it is
    # probed; node5: unrecorded, its IP given: probed only; node1-3: recorded, IPs given: asked nothing
    hosts = three_nodes(node4={}, node5={"podnet_node_ip": "172.31.9.15/24"})
    second = run_plan(tmp_path, hosts, group_vars)
    assert second.rc == 0, second.text
    assert ran(second, GATHER) == {"node4"}
    assert ran(second, PROBE) == {"node4", "node5"}
    facts = second.facts()
    assert facts["node4"]["podnet_plan"]["nodes"]["node4"]["node_ips"][0] in local_addresses()
    assert read_state(second.state_path)["nodes"]["node4"] == facts["node4"]["podnet_node"]["pod_cidrs"]

    # without adoption nobody is probed; with gathering off for node6, it is not gathered and the plan names it
    hosts = three_nodes(node4={}, node5={"podnet_node_ip": "172.31.9.15/24"}, node6={"podnet_plan_gather_facts": False})
    third = run_plan(tmp_path, hosts, group_vars, args=["-e", "podnet_plan_adopt=false"])
    assert third.rc != 0
    assert ran(third, GATHER) == {"node4"}
    assert ran(third, PROBE) == set()
    assert "node6" in third.failure_text(), third.text


def test_sticky_across_runs_when_nodes_come_and_go(tmp_path):
    assert run_plan(tmp_path, three_nodes()).rc == 0
    first = read_state(tmp_path / "inventory" / ".podnet_state.yml")["nodes"]
    hosts = three_nodes()
    del hosts["node1"]
    hosts["aaa-new"] = {"podnet_node_ip": "172.31.9.50"}
    # A node missing from the inventory keeps its block (a hidden, not a removed node) ...
    run = run_plan(tmp_path, dict(reversed(list(hosts.items()))))
    assert run.rc == 0, run.text
    state = read_state(run.state_path)
    assert state["nodes"]["node1"] == first["node1"] and state["released"] == []
    assert state["nodes"]["aaa-new"] == ["10.244.3.0/24"]
    # ... until it is released on purpose.
    run = run_plan(tmp_path, dict(reversed(list(hosts.items()))), {"podnet_release_nodes": ["node1"]})
    assert run.rc == 0, run.text
    state = read_state(run.state_path)
    assert "node1" not in state["nodes"]
    assert state["nodes"]["node2"] == first["node2"]
    assert state["nodes"]["node3"] == first["node3"]
    assert state["nodes"]["aaa-new"] == ["10.244.3.0/24"]
    assert state["released"] == first["node1"]


def test_check_mode_shows_the_diff_and_writes_nothing(tmp_path):
    assert run_plan(tmp_path, three_nodes()).rc == 0
    before = (tmp_path / "inventory" / ".podnet_state.yml").read_bytes()
    hosts = three_nodes()
    hosts["node4"] = {"podnet_node_ip": "172.31.9.14"}
    run = run_plan(tmp_path, hosts, args=("--check", "--diff"))
    assert run.rc == 0, run.text
    assert run.state_path.read_bytes() == before
    plan_task = run.task_results("Plan the pod network of the whole cluster")
    result = next(iter(plan_task.values()))
    assert result["changed"] is True
    assert "node4" in result["diff"]["after"] and "node4" not in result["diff"]["before"]
    assert result["added"] == {"node4": ["10.244.3.0/24"]}


def test_state_file_at_the_former_default_place_is_moved_without_loss(tmp_path):
    """podnet_state.yml beside the inventory (the former default, read by Ansible as inventory in a directory
    inventory): read while it is the only state file, left alone in check mode, moved by the next write."""
    assert run_plan(tmp_path, three_nodes(), {"podnet_cluster_cidrs": ["10.66.0.0/20"]}).rc == 0
    inv = tmp_path / "inventory"
    hidden, old = inv / ".podnet_state.yml", inv / "podnet_state.yml"
    hidden.rename(old)
    (inv / "podnet_state.yml.lock").write_text("")
    text = old.read_text()
    hosts = three_nodes()
    hosts["node0"] = {"podnet_node_ip": "172.31.9.9/24"}   # would take 10.66.0.0/24 in a fresh plan
    check = run_plan(tmp_path, hosts, {"podnet_cluster_cidrs": ["10.66.0.0/20"]}, args=("--check",))
    assert check.rc == 0, check.text
    assert old.read_text() == text and not hidden.exists()
    run = run_plan(tmp_path, hosts, {"podnet_cluster_cidrs": ["10.66.0.0/20"]})
    assert run.rc == 0, run.text
    assert not old.exists() and not (inv / "podnet_state.yml.lock").exists()
    nodes = read_state(hidden)["nodes"]
    assert {n: nodes[n] for n in ("node1", "node2", "node3")} == yaml.safe_load(text)["nodes"]
    assert nodes["node0"] == ["10.66.3.0/24"]
    assert "moved to %s" % hidden in run.text


def test_explicit_state_file_path(tmp_path):
    target = tmp_path / "elsewhere" / "plan.yml"
    run = run_plan(tmp_path, three_nodes(), {"podnet_state_file": str(target)})
    assert run.rc == 0, run.text
    assert set(read_state(target)["nodes"]) == {"node1", "node2", "node3"}


def test_concurrent_runs_do_not_interleave(tmp_path):
    assert run_plan(tmp_path, three_nodes()).rc == 0
    inv = tmp_path / "inventory"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
               ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"))
    procs = [subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", str(inv), str(tmp_path / "plan.yml")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _unused in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
    state = read_state(inv / ".podnet_state.yml")
    assert set(state["nodes"]) == {"node1", "node2", "node3"}
    assert not [p for p in inv.iterdir() if p.name.endswith(".tmp")]


ERROR_CASES = {
    "host bits": ({"podnet_cluster_cidrs": ["10.244.1.0/16"]}, {},
                  ["podnet_cluster_cidrs[0]", "10.244.1.0/16", "host bits", "10.244.0.0/16"]),
    "not a network": ({"podnet_cluster_cidrs": ["10.244.0.0/33"]}, {}, ["podnet_cluster_cidrs[0]", "not a network"]),
    "prefix not longer": ({"podnet_node_prefix_ipv4": 16}, {}, ["podnet_node_prefix_ipv4", "/16", "not longer"]),
    "prefix too long": ({"podnet_node_prefix_ipv4": 31}, {}, ["podnet_node_prefix_ipv4", "/31", "usable"]),
    "exhausted": ({"podnet_cluster_cidrs": ["10.244.0.0/22"]},
                  {"node4": {"podnet_node_ip": "172.31.9.14"}, "node5": {"podnet_node_ip": "172.31.9.15"}},
                  ["10.244.0.0/22 holds 4 /24 blocks (2^(24-22)", "3 are assigned and 2 more nodes need one (node4, node5)",
                   "1 short"]),
    "service overlap": ({"podnet_service_cidrs": ["10.244.0.0/12"]}, {},
                        ["podnet_service_cidrs[0]", "host bits"]),
    "service overlaps cluster": ({"podnet_service_cidrs": ["10.240.0.0/12"]}, {},
                                 ["podnet_service_cidrs[0] 10.240.0.0/12 overlaps podnet_cluster_cidrs[0]"]),
    "reserved overlaps service": ({"podnet_service_cidrs": ["10.96.0.0/12"], "podnet_reserved_cidrs": ["10.96.0.0/16"]},
                                  {}, ["podnet_reserved_cidrs[0] 10.96.0.0/16 overlaps podnet_service_cidrs[0]"]),
    "node ip in cluster": ({}, {"node2": {"podnet_node_ip": "10.244.200.7"}},
                           ["host node2", "10.244.200.7", "inside the cluster network"]),
    "claim outside": ({}, {"node1": {"podnet_pod_cidrs": ["10.1.0.0/24"]}},
                      ["host node1", "podnet_pod_cidrs", "outside the cluster network"]),
    "claim wrong size": ({}, {"node1": {"podnet_pod_cidrs": ["10.244.4.0/25"]}},
                         ["host node1", "podnet_pod_cidrs", "/25", "podnet_node_prefix_ipv4 is 24"]),
    "claim wrong family": ({}, {"node1": {"podnet_pod_cidrs": ["fd00::/64"]}},
                           ["host node1", "podnet_pod_cidrs", "no IPv6 network"]),
    "claim twice": ({}, {"node1": {"podnet_pod_cidrs": "10.244.9.0/24"}, "node3": {"podnet_pod_cidrs": "10.244.9.0/24"}},
                    ["hosts node1 and node3 both claim 10.244.9.0/24"]),
    "claim held in state": ({}, {"node3": {"podnet_pod_cidrs": "10.244.0.0/24"}},
                            ["host node3", "the state file assigns 10.244.0.0/24 to host node1"]),
    "no node ip of family": ({"podnet_cluster_cidrs": ["10.244.0.0/16", "fd00::/48"]}, {},
                             ["host node1: no IPv6 node IP", "host node3: no IPv6 node IP"]),
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Dict[str, bytes]:
    """What a good plan of three_nodes() leaves beside its inventory (the state file), made once for the module:
    each bad-plan case starts from a copy of it instead of planning the same cluster again."""
    where = tmp_path_factory.mktemp("recorded")
    assert run_plan(where, three_nodes()).rc == 0
    return {p.name: p.read_bytes() for p in (where / "inventory").iterdir() if p.is_file() and p.name != "hosts.yml"}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_plan_fails_before_any_change_and_keeps_state(tmp_path, case, recorded):
    (tmp_path / "inventory").mkdir()
    for name, data in recorded.items():
        (tmp_path / "inventory" / name).write_bytes(data)
    state_path = tmp_path / "inventory" / ".podnet_state.yml"
    assert state_path.exists()
    before = state_path.read_bytes()
    group_vars, host_vars, words = ERROR_CASES[case]
    run = run_plan(tmp_path, three_nodes(**host_vars), group_vars)
    assert run.rc != 0
    message = run.failure_text()
    for word in words:
        assert word in message, message
    assert "nothing was changed" in message
    assert state_path.read_bytes() == before


@pytest.mark.parametrize("content, words", [
    ("nodes: [a, b]\n", ["not valid", "'nodes' must map"]),
    ("nodes: {node1: [10.244.0.3/24]}\n", ["not valid", "nodes.node1[0]", "host bits"]),
    ("{{{ not yaml\n", ["not valid", "not YAML"]),
])
def test_invalid_state_file_fails_and_is_kept(tmp_path, content, words):
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / ".podnet_state.yml").write_text(content)
    run = run_plan(tmp_path, three_nodes())
    assert run.rc != 0
    message = run.failure_text()
    for word in words:
        assert word in message, message
    assert (inv / ".podnet_state.yml").read_text() == content


def test_state_file_required_without_an_inventory_file(tmp_path):
    """-i host1,host2, has no directory to keep the state beside: the plan asks for podnet_state_file."""
    playbook = tmp_path / "plan.yml"
    playbook.write_text(PLAYBOOK.replace("hosts: podnet_nodes", "hosts: all"))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    before = sorted(p.name for p in (REPO / "playbooks").iterdir())
    proc = forkserver.run([ANSIBLE_PLAYBOOK, "-i", "node1,node2,", str(playbook), "-e", json.dumps(
        {"podnet_node_group": "all", "podnet_node_ip": "192.0.2.200", "ansible_connection": "local"})],
        cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode != 0
    assert "podnet_state_file is not set" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    assert sorted(p.name for p in (REPO / "playbooks").iterdir()) == before
    assert not list(tmp_path.glob("**/*podnet_state.yml*")) and not (tmp_path / "None").exists()


def run_plan_playbook(tmp_path: Path, hosts: dict, group_vars: dict, args=()):
    """The collection's own playbook podnet.cluster.plan (the preview), under the default stdout callback."""
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    for host in hosts.values():
        host.setdefault("ansible_connection", "local")
        host.setdefault("ansible_python_interpreter", sys.executable)
    (inv / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"podnet_nodes": {"hosts": hosts, "vars": group_vars}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_RETRY_FILES_ENABLED="0")
    return forkserver.run([ANSIBLE_PLAYBOOK, "-i", str(inv), "podnet.cluster.plan", *args], cwd=REPO, env=env,
                          timeout=300)


def task_output(out: str, name: str) -> str:
    """What the default callback printed under the task whose name starts with ``name``."""
    start = out.index("TASK [%s" % name)
    end = out.find("TASK [", start + 1)
    return out[start:end if end > 0 else len(out)]


def test_the_plan_playbook_prints_and_writes_the_kubernetes_settings(tmp_path):
    """Dual-stack, IPv6 listed first, other networks and prefixes, the gce fabric: the block is printed once and the
    written files parse and carry the plan's networks (IPv4 first, as the plan orders them)."""
    hosts = {f"k{i}": {"podnet_node_ip": [f"fd31::{i}/64", f"172.31.9.{10 + i}/24"]} for i in (1, 2, 3, 4)}
    group_vars = {"podnet_cluster_cidrs": ["fd00:72::/56", "10.72.0.0/21"], "podnet_node_prefix_ipv4": 25,
                  "podnet_node_prefix_ipv6": 64, "podnet_service_cidrs": ["10.73.0.0/20", "fd00:73::/112"],
                  "podnet_fabric": "gce"}
    report = tmp_path / "report"

    check = run_plan_playbook(tmp_path, hosts, group_vars, ["--check", "-e", "podnet_report_dir=%s" % report])
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert "Check mode: not written to %s" % report in check.stdout
    assert not report.exists(), "check mode wrote the Kubernetes settings"

    run = run_plan_playbook(tmp_path, hosts, group_vars, ["-e", "podnet_report_dir=%s" % report])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    out = run.stdout
    assert out.count("Kubernetes settings that must agree with this plan") == 1, out
    assert "networking.podSubnet: 10.72.0.0/21,fd00:72::/56" in out
    assert "beside the gce fabric's routes" in out
    assert "Written to %s: kubeadm-networking.yaml, kube-controller-manager.flags" % report in out

    cluster, proxy = yaml.safe_load_all((report / "kubeadm-networking.yaml").read_text())
    assert cluster["kind"] == "ClusterConfiguration" and cluster["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert cluster["networking"] == {"podSubnet": "10.72.0.0/21,fd00:72::/56",
                                     "serviceSubnet": "10.73.0.0/20,fd00:73::/112"}
    assert {a["name"]: a["value"] for a in cluster["controllerManager"]["extraArgs"]} == {
        "allocate-node-cidrs": "false", "configure-cloud-routes": "false",
        "node-cidr-mask-size-ipv4": "25", "node-cidr-mask-size-ipv6": "64"}
    assert proxy == {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                     "clusterCIDR": "10.72.0.0/21,fd00:72::/56", "detectLocalMode": "ClusterCIDR"}
    flags = (report / "kube-controller-manager.flags").read_text().splitlines()
    assert flags == ["--allocate-node-cidrs=false", "--configure-cloud-routes=false",
                     "--cluster-cidr=10.72.0.0/21,fd00:72::/56", "--node-cidr-mask-size-ipv4=25",
                     "--node-cidr-mask-size-ipv6=64", "--service-cluster-ip-range=10.73.0.0/20,fd00:73::/112"]
    assert "changed: [k1]" in task_output(out, "Show the Kubernetes settings")
    assert (report / "plan.html").exists()
    assert not (tmp_path / "inventory" / ".podnet_state.yml").exists(), "the preview wrote the state file"

    mtimes = {p.name: p.stat().st_mtime_ns for p in report.iterdir()}
    again = run_plan_playbook(tmp_path, hosts, group_vars, ["-e", "podnet_report_dir=%s" % report])
    assert again.returncode == 0, again.stdout[-3000:]
    assert "ok: [k1]" in task_output(again.stdout, "Show the Kubernetes settings"), again.stdout[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in report.iterdir()} == mtimes
