# SPDX-License-Identifier: Apache-2.0
"""The lab's inventory file (lab/plugins/module_utils/lab_inventory.py): its text and its write."""

from __future__ import annotations

import yaml

from ansible_collections.podnet.lab.plugins.module_utils.lab_inventory import inventory_text, write_inventory
from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import build_inventory, build_topology

PARAMS = {"name": "mylab", "nodes": None, "node_count": 2, "subnet": "10.9.8.0/24", "subnet_ipv6": "",
          "external_cidr": "203.0.113.0/24", "external_cidr_ipv6": "", "root": "/var/tmp/podnet-lab/mylab",
          "state": "present"}


def inventory():
    topo = build_topology(dict(PARAMS))
    return build_inventory(topo, {"podnet_cluster_cidrs": ["10.70.0.0/16"]})


def test_the_text_is_the_inventory_in_order_under_a_header_that_says_how_to_remove_the_lab():
    data = inventory()
    text = inventory_text("mylab", data)
    assert yaml.safe_load(text) == data
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0] == '# Inventory of the podnet lab "mylab", written by podnet.lab.lab_topology.'
    assert "-e podnet_lab_state=absent -e podnet_lab_name=mylab" in header[-1]
    assert not any("SSH" in line for line in header)
    body = text[len("\n".join(header)) + 1:]
    assert body.startswith("all:\n  children:\n")  # block style, two spaces, the module's own key order
    nodes = yaml.safe_load(text)["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]
    assert list(nodes["hosts"]) == ["mylab-node1", "mylab-node2"]


def test_a_lab_served_over_ssh_says_where_to_run_ansible():
    text = inventory_text("mylab", inventory(), run_prefix="nsenter --net=/run/netns/mylab-ctl --")
    assert "#   nsenter --net=/run/netns/mylab-ctl -- ansible-playbook -i <this directory> ..." in text


def test_the_file_is_written_once_and_check_mode_writes_nothing(tmp_path):
    directory = tmp_path / "inv" / "lab"
    text = inventory_text("mylab", inventory())
    assert write_inventory(str(directory), text, check_mode=True) is True
    assert not directory.exists()
    assert write_inventory(str(directory), text) is True
    path = directory / "hosts.yml"
    assert path.read_text() == text and oct(path.stat().st_mode & 0o777) == "0o644"
    assert write_inventory(str(directory), text) is False
    assert write_inventory(str(directory), text, check_mode=True) is False
    assert write_inventory(str(directory), text + "# more\n", check_mode=True) is True
    assert path.read_text() == text


def test_the_nodes_compile_cache_is_the_labs_own_unless_another_directory_is_given():
    own = build_inventory(build_topology(dict(PARAMS)), {})
    assert own["all"]["children"]["podnet_lab"]["vars"]["podnet_netns_code_cache"] == "/var/tmp/podnet-lab/mylab/code-cache"
    shared = build_inventory(build_topology(dict(PARAMS, code_cache="/var/tmp/shared//cache/")), {})
    assert shared["all"]["children"]["podnet_lab"]["vars"]["podnet_netns_code_cache"] == "/var/tmp/shared/cache"
