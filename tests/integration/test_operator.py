# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The operator's first hour, on a lab reached through a directory inventory (``-i <dir>``, the usual layout):
previews that write nothing, a state file Ansible never reads as inventory, confirmations that are not state."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lib.labtools import BIN, Lab, new_lab, recap, run

PREFIX = "pop"
FIRST = ["10.71.0.0/20"]
MOVED = ["10.72.8.0/21"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("op") / "inv", request, node_names=["oak", "elm", "ash"],
                   lab_vars={"podnet_lab_subnet": "172.27.4.0/24",
                             "podnet_lab_external_cidr": "198.18.4.0/24",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": FIRST,
                                                           "podnet_runtimes": ["cni"]}})
    spec.build()
    return spec


def play(lab: Lab, name: str, *args: str, check: bool = True, **extra):
    """A podnet.cluster playbook with the inventory given as its directory."""
    argv = [str(BIN / "ansible-playbook"), "podnet.cluster.%s" % name, "-i", str(lab.inventory_dir)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    return run(argv + list(args), check=check, cwd=lab.repo)


def listing(directory: Path):
    """Every file under ``directory``, hidden ones included, with its content."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def failure(proc) -> str:
    return proc.stdout + proc.stderr


def test_preview_writes_nothing_and_a_block_no_node_holds_moves_freely(lab: Lab, quad_preview):
    oak, elm, ash = lab.nodes
    before = listing(lab.inventory_dir)
    preview = play(lab, "plan")
    assert oak in preview.stdout
    assert listing(lab.inventory_dir) == before, "podnet.cluster.plan wrote into the inventory directory"
    # site --check --diff before the first converge: the run of the four-node lab below (fixture quad_preview)
    quad_before, _proc, quad_after = quad_preview
    assert quad_after == quad_before, "site --check wrote into the inventory directory"
    # Nothing was applied: another cluster network is just another preview.
    moved = play(lab, "plan", podnet_cluster_cidrs=MOVED)
    assert "10.72.8.0/24" in moved.stdout and listing(lab.inventory_dir) == before

    # One node converged, all three recorded (the plan covers the whole group): only oak holds its block.
    play(lab, "site", "--limit", oak)
    state_path = lab.inventory_dir / ".podnet_state.yml"
    recorded = yaml.safe_load(state_path.read_text())["nodes"]
    assert set(recorded) == {oak, elm, ash}
    state_text = state_path.read_text()

    refused = play(lab, "site", check=False, podnet_cluster_cidrs=MOVED)
    text = failure(refused)
    assert refused.returncode != 0
    assert "host %s: the state file assigns it %s" % (oak, recorded[oak][0]) in text, text[-3000:]
    assert "host %s" % elm not in text and "host %s" % ash not in text, text[-3000:]
    assert "-e podnet_allow_readdress=true" in text and "delete" not in text, text[-3000:]
    assert state_path.read_text() == state_text

    # A read-only playbook says the variables differ from the plan, not how to change it. (Teardown reads no plan:
    # each node's record says what to remove, so changed variables never block it.)
    for name in ("verify",):
        proc = play(lab, name, check=False, podnet_cluster_cidrs=MOVED)
        text = failure(proc)
        assert proc.returncode != 0 and "your variables differ from the recorded plan" in text, text[-3000:]
        assert "delete" not in text and "allow_readdress" not in text, text[-3000:]
    assert state_path.read_text() == state_text

    # Confirmed once: every node moves; the next plain run with the same variables changes nothing.
    play(lab, "site", podnet_cluster_cidrs=MOVED, podnet_allow_readdress=True)
    after = yaml.safe_load(state_path.read_text())["nodes"]
    assert {c for n in lab.nodes for c in after[n]} == {"10.72.8.0/24", "10.72.9.0/24", "10.72.10.0/24"}
    again = play(lab, "site", podnet_cluster_cidrs=MOVED)
    counts = recap(again.stdout)
    assert all(counts[n]["changed"] == 0 for n in lab.nodes), again.stdout[-4000:]
    record = json.loads(Path(lab.node_root(oak), "upper/etc/podnet/node.json").read_text())
    assert "allow_readdress" not in json.dumps(record)


def plan_table(proc) -> str:
    """The table the plan playbook printed: the lines between its task header and the task's result."""
    block = proc.stdout.split("TASK [Show the plan table", 1)[1].split("\n", 1)[1]
    return block.split("\nok: [", 1)[0].split("\nchanged: [", 1)[0]


def test_the_plan_table_reads_the_same_under_any_callback_and_is_exported(lab: Lab, tmp_path):
    before = listing(lab.inventory_dir)
    export = tmp_path / "plan.json"
    yaml_run = play(lab, "plan", podnet_cluster_cidrs=MOVED, podnet_plan_export=str(export))
    default = run([str(BIN / "ansible-playbook"), "podnet.cluster.plan", "-i", str(lab.inventory_dir), "-e",
                   json.dumps({"podnet_cluster_cidrs": MOVED, "podnet_plan_export": str(export)})], cwd=lab.repo, ANSIBLE_STDOUT_CALLBACK="default",
                  ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    table = plan_table(yaml_run)
    assert plan_table(default) == table
    assert table.splitlines()[0] == "podnet.cluster plan: fabric l2_routes"
    assert "  IPv4 10.72.8.0/21: 3 of 8 /24 blocks used" in table.splitlines()
    assert '"' not in table and "[" not in table
    data = json.loads(export.read_text())
    assert set(data["nodes"]) == set(lab.nodes) and data["fabric"] == "l2_routes"
    assert all(n["status"] == "unchanged" for n in data["nodes"].values())
    assert data["capacity"][0]["used"] == 3 and data["capacity"][0]["total"] == 8
    assert listing(lab.inventory_dir) == before


def test_the_state_file_is_never_read_as_inventory(lab: Lab):
    assert (lab.inventory_dir / ".podnet_state.yml").exists(), "run after the converge above"
    graph = run([str(BIN / "ansible-inventory"), "-i", str(lab.inventory_dir), "--graph"], cwd=lab.repo,
                ANSIBLE_INVENTORY_UNPARSED_WARNING="True")
    assert "WARNING" not in graph.stderr + graph.stdout, graph.stderr
    groups = re.findall(r"@(\S+):", graph.stdout)
    assert groups and "nodes" not in groups and "released" not in groups, graph.stdout


@pytest.fixture()
def grown(tmp_path, request) -> Lab:
    spec = new_lab("pgr", tmp_path / "inv", request, node_names=["n1", "n2", "n3"],
                   lab_vars={"podnet_lab_subnet": "172.27.5.0/24", "podnet_lab_external_cidr": "198.18.5.0/24",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": ["10.73.0.0/21"],
                                                           "podnet_node_prefix_ipv4": 26,
                                                           "podnet_fabric": "router",
                                                           "podnet_runtimes": ["cni"]}})
    spec.playbook("present")
    return spec


def test_the_lab_remembers_its_variables_shrinks_cleanly_and_is_removed_whole(grown: Lab):
    lab = grown
    given = lab.lab_vars.pop("podnet_lab_inventory_vars")
    play(lab, "site")
    # Re-run to add a node, without the variables given at first: they stay (fabric, prefix, the router group).
    lab.nodes.append("%s-n4" % lab.name)
    lab.lab_vars["podnet_lab_nodes"] = list(lab.nodes)
    lab.playbook("present")
    inventory = yaml.safe_load(lab.hosts_yml.read_text())["all"]["children"]["podnet_lab"]["children"]
    for key, value in given.items():
        assert inventory["podnet_nodes"]["vars"][key] == value, inventory["podnet_nodes"]["vars"]
    assert list(inventory["podnet_routers"]["hosts"]) == ["%s-router" % lab.name]
    play(lab, "site")
    state = yaml.safe_load((lab.inventory_dir / ".podnet_state.yml").read_text())["nodes"]
    assert all(state[n][0].endswith("/26") for n in lab.nodes), state

    # Shrink after the last node was converged: one clean run.
    lab.nodes.pop()
    lab.lab_vars["podnet_lab_nodes"] = list(lab.nodes)
    shrunk = lab.playbook("present", False)
    assert shrunk.returncode == 0, (shrunk.stdout + shrunk.stderr)[-3000:]
    assert "Cannot find device" not in shrunk.stdout + shrunk.stderr

    # The playbook's removal is make lab-destroy's: the inventory and the plan's state file go too, so a new lab
    # in the same place starts from nothing (no re-addressing refusals against an old plan).
    lab.playbook("absent")
    assert sorted(p.name for p in lab.inventory_dir.iterdir()) == []
    makefile = (lab.repo / "Makefile").read_text()
    destroy = re.search(r"^lab-destroy:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert destroy.strip().splitlines() == ["$(BIN)/ansible-playbook podnet.lab.lab -e podnet_lab_state=absent"]
    lab.lab_vars["podnet_lab_inventory_vars"] = {"podnet_cluster_cidrs": ["10.74.0.0/22"], "podnet_runtimes": ["cni"]}
    lab.playbook("present")
    play(lab, "site")


class _Module:
    """What lab_topology's Lab needs of an AnsibleModule, running real commands."""
    check_mode = False

    @staticmethod
    def get_bin_path(name, required=False):
        return "/usr/sbin/" + name if os.path.exists("/usr/sbin/" + name) else "/bin/" + name

    @staticmethod
    def run_command(argv, data=None, binary_data=False):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def test_a_switch_port_gone_before_its_delete_is_no_error(request):
    """A shrinking lab reads the switch port of a removed node, and the kernel removes it (tearing the node's
    namespace down, asynchronously) before the lab deletes it: the delete finds nothing, which is no error."""
    from ansible_collections.podnet.lab.plugins.modules.lab_topology import Lab as Topology, LabError

    ns = "pdl%d-sw" % os.getpid()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "delete", ns], check=False))
    subprocess.run(["ip", "-n", ns, "link", "add", "p14", "type", "veth", "peer", "name", "n14"], check=True)
    topo = Topology(_Module())
    subprocess.run(["ip", "-n", ns, "link", "delete", "n14"], check=True)   # takes p14 with it
    topo.delete_link(ns, "p14")
    assert topo.commands == ["ip -n %s link delete p14" % ns]
    subprocess.run(["ip", "-n", ns, "link", "add", "p15", "type", "bridge"], check=True)
    topo.delete_link(ns, "p15")
    assert "p15" not in subprocess.run(["ip", "-n", ns, "link"], capture_output=True, text=True, check=False).stdout
    with pytest.raises(LabError):
        topo.delete_link(ns, "lo")   # a delete the kernel refuses, of a link that is there: an error


@pytest.fixture(scope="module")
def quad(tmp_path_factory, request) -> Lab:
    spec = new_lab("pqd", tmp_path_factory.mktemp("quad") / "inv", request, count=4,
                   lab_vars={"podnet_lab_subnet": "172.27.6.0/24", "podnet_lab_external_cidr": "198.18.6.0/24",
                             "podnet_lab_inventory_vars": {"podnet_cluster_cidrs": ["10.75.0.0/22"],
                                                           "podnet_node_prefix_ipv4": 25}})
    spec.build()
    return spec


@pytest.fixture(scope="module")
def quad_preview(quad: Lab):
    """``site --check --diff`` of the four-node lab before its first converge, with every file of its inventory
    directory before and after: (before, the run, after). It serves the preview test (a check writes nothing
    into the directory) and the test of the diff's length."""
    before = listing(quad.inventory_dir)
    proc = play(quad, "site", "--check", "--diff")
    return before, proc, listing(quad.inventory_dir)


def test_check_diff_of_a_first_converge_reads_in_a_few_hundred_lines(quad: Lab, quad_preview):
    proc = quad_preview[1]
    lines = proc.stdout.splitlines()
    assert len(lines) < 1000, "%d lines of --check --diff for 4 nodes" % len(lines)
    headers = [l for l in lines if l.startswith(("--- before: ", "+++ after: "))]
    node_headers = [h for h in headers if ".podnet_state.yml" not in h]
    assert node_headers and all(h.split(": ", 1)[1].split(":")[0] in quad.nodes for h in node_headers), headers
    text = proc.stdout
    assert "/var/lib/podnet/lib" not in text and "record /etc/podnet/node.json" not in text
    for node in quad.nodes:
        assert "%s: restore program: " % node in text
        summary = [l for l in lines if l.startswith("%s: bridge cbr0 created" % node)]
        # the lab's nodes run no Docker: daemon.json is written, and no restart is pending
        assert len(summary) == 1 and "routes added" in summary[0] and "daemon.json keys set" in summary[0] \
            and "Docker restart pending" not in summary[0], lines[-80:]
    verbose = play(quad, "site", "--check", "--diff", "-v", "--limit", quad.nodes[0])
    assert "%s: record /etc/podnet/node.json" % quad.nodes[0] in verbose.stdout


def test_a_cluster_wide_mistake_is_reported_once(quad: Lab):
    proc = play(quad, "site", check=False, podnet_bridge_mtu="big")
    assert proc.returncode != 0
    # checked once on the controller before any node is asked anything: one error naming every node
    out = proc.stdout + proc.stderr
    lines = [l for l in out.splitlines() if "podnet_bridge_mtu='big': 0 (the uplink's MTU) or 68..65535" in l]
    assert lines and all("a group variable?" in l for l in lines), out[-3000:]
    assert all(n in lines[0] for n in quad.nodes), lines
    assert out.count("podnet_bridge_mtu='big'") <= 2 * len(lines), out[-3000:]
