# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The argument spec of the plan role's entry point main, as the plan action validates it on the controller.

The role's meta/argument_specs.yml documents the same options (with their descriptions) for ``ansible-doc`` and
for Ansible's own validation task; a unit test checks that the two agree in every name, type, element type,
default and requirement. The plan action imports this instead of reading the role's files from disk.
"""

from __future__ import annotations

from typing import Any, Dict

PLAN_ROLE_OPTIONS: Dict[str, Dict[str, Any]] = {
    "podnet_cluster_cidrs": {"type": "list", "elements": "str", "default": ["10.244.0.0/16"]},
    "podnet_node_prefix_ipv4": {"type": "int", "default": 24},
    "podnet_node_prefix_ipv6": {"type": "int", "default": 64},
    "podnet_service_cidrs": {"type": "list", "elements": "str", "default": []},
    "podnet_reserved_cidrs": {"type": "list", "elements": "str", "default": []},
    "podnet_state_file": {"type": "path"},
    "podnet_node_group": {"type": "str", "default": "podnet_nodes"},
    "podnet_plan_gather_facts": {"type": "bool", "default": True},
    "podnet_pod_cidrs": {"type": "raw", "required": False},
    "podnet_node_ip": {"type": "raw", "required": False},
    "podnet_release_nodes": {"type": "list", "elements": "str", "default": []},
    "podnet_plan_prune": {"type": "bool", "default": False},
    "podnet_allow_readdress": {"type": "bool", "default": False},
    "podnet_plan_adopt": {"type": "bool", "default": True},
}
