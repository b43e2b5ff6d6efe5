# SPDX-License-Identifier: Apache-2.0
"""The run-once checks of every node's variables (node_state validate, the plan role's variables) take each
host's own values: a host variable of the first host is not carried over to the others. Runs the two checks
alone, on the controller, for an inventory of local hosts (nothing is asked of any host)."""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_role_spec import PLAN_ROLE_OPTIONS
from lib.labtools import BIN, REPO

PLAYBOOK = """
- hosts: podnet_nodes
  gather_facts: false
  tasks:
    - ansible.builtin.import_role: {name: podnet.cluster.node, tasks_from: validate.yml}
    - ansible.builtin.debug: {var: __podnet_checked.fabrics}
      run_once: true
    # the first task of the plan role (roles/plan/tasks/plan.yml), alone: the rest asks the nodes
    - name: Check the role variables of every host
      podnet.cluster.plan: {check_role_vars: true}
      run_once: true
"""


def run(tmp_path, hosts, *args):
    inventory = {"all": {"children": {"podnet_nodes": {"hosts": hosts},
                                      "podnet_routers": {"hosts": {"rtr": {}}}},
                         "vars": {"ansible_connection": "local"}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    # the plan role's defaults, which its first task sees inside the role, as play variables (in no host's
    # hostvars either); but not those a host sets, which a play variable would override
    set_by_hosts = set(name for values in hosts.values() for name in values)
    defaults = {name: spec["default"] for name, spec in PLAN_ROLE_OPTIONS.items()
                if "default" in spec and name not in set_by_hosts}
    play = yaml.safe_load(PLAYBOOK)
    play[0]["vars"] = defaults
    (tmp_path / "pb.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
               ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "pb.yml"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    return proc, json.loads(proc.stdout)


def task_hosts(out, name):
    for play in out["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(name):
                return task["hosts"]
    raise KeyError(name)


def test_a_host_variable_of_the_first_host_stays_its_own(tmp_path):
    hosts = {"ash": {"podnet_fabric": "router", "podnet_node_ip": "172.31.9.11/24"},
             "birch": {"podnet_node_ip": "172.31.9.12/24"},
             "cedar": {"podnet_node_ip": "172.31.9.13/24", "podnet_fabric": "l2_routes"}}
    proc, out = run(tmp_path, hosts)
    assert proc.returncode == 0, proc.stdout[-3000:]
    fabrics = task_hosts(out, "debug")["ash"]["__podnet_checked.fabrics"]
    assert fabrics == {"ash": "router", "birch": "l2_routes", "cedar": "l2_routes"}


def test_a_bad_value_of_the_first_host_names_that_host_only(tmp_path):
    hosts = {"ash": {"podnet_bridge": "br;x", "podnet_node_ip": "172.31.9.11/24", "podnet_node_prefix_ipv4": 33},
             "birch": {"podnet_node_ip": "172.31.9.12/24"}}
    proc, out = run(tmp_path, hosts)
    assert proc.returncode != 0
    node_msg = task_hosts(out, "Check every node's variables and what its fabric needs (once, on the controller)")
    errors = node_msg["ash"]["errors"]
    assert any("podnet_bridge" in e and "ash" in e for e in errors), errors
    assert not any("birch" in e for e in errors), errors
    # the node check failed, so the plan's did not run; again with a good bridge: the plan's check names ash only
    hosts["ash"]["podnet_bridge"] = "cbr0"
    proc, out = run(tmp_path, hosts)
    assert proc.returncode != 0
    errors = task_hosts(out, "Check the role variables of every host")["ash"]["argument_errors"]
    assert any("podnet_node_prefix_ipv4" in e and "ash" in e for e in errors), errors
    assert not any("birch" in e for e in errors), errors
