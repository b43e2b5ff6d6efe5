# SPDX-License-Identifier: Apache-2.0
"""The filter that builds podnet.cluster.gce_routes' input from the plan and the host variables."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.podnet.cluster.plugins.filter.gce_route_specs import gce_route_specs

PLAN = {"nodes": {"b": {"pod_cidrs": ["10.244.2.0/24", "fd00::2:0/112"]}, "a": {"pod_cidrs": ["10.244.1.0/24"]}}}


def test_podnet_variables_then_inventory_plugin_variables_then_the_host_name():
    hostvars = {
        "a": {"podnet_gce_instance": "vm-a", "podnet_gce_zone": "z1", "name": "ignored", "zone": "ignored"},
        "b": {"name": "vm-b", "zone": "z2",
              "selfLink": "https://www.googleapis.com/compute/v1/projects/p/zones/z2/instances/vm-b"},
    }
    assert gce_route_specs(PLAN, hostvars) == [
        {"node": "a", "instance": "vm-a", "zone": "z1", "dest_ranges": ["10.244.1.0/24"]},
        {"node": "b", "instance": "https://www.googleapis.com/compute/v1/projects/p/zones/z2/instances/vm-b",
         "zone": "z2", "dest_ranges": ["10.244.2.0/24", "fd00::2:0/112"]},
    ]
    assert gce_route_specs(PLAN, {"a": {"zone": "z1"}, "b": {"name": "vm-b", "zone": "z2"}})[0]["instance"] == "a"


def test_nodes_without_a_zone_are_all_named():
    with pytest.raises(AnsibleFilterError, match=r"no zone for 2 node\(s\): a, b; set podnet_gce_zone"):
        gce_route_specs(PLAN, {"a": {}, "b": {"name": "vm-b"}})
    # an instance URL carries its zone
    assert gce_route_specs({"nodes": {"a": {}}}, {"a": {"podnet_gce_instance": "zones/z1/instances/x"}})[0][
        "zone"] is None


def test_the_plan_must_have_nodes():
    with pytest.raises(AnsibleFilterError, match="no 'nodes' table"):
        gce_route_specs({}, {})
