# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter plan_table: the plan as aligned text lines."""

from __future__ import annotations

DOCUMENTATION = r"""
name: plan_table
author: podnet.cluster maintainers (!UNKNOWN)
version_added: 0.1.0
short_description: Render the pod-network plan as a table
description:
  - Turns the C(nodes) mapping of the C(podnet_plan) fact into aligned text lines, one per node, in natural
    name order, with the node IPs, pod CIDRs and gateways.
options:
  _input:
    description: The C(nodes) mapping of C(podnet_plan).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Print the plan
  ansible.builtin.debug:
    msg: "{{ podnet_plan.nodes | podnet.cluster.plan_table }}"
  run_once: true
"""

RETURN = r"""
_value:
  description: One line per node plus a header line.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import natural_key


def plan_table(nodes):
    if not isinstance(nodes, dict):
        raise AnsibleFilterError("plan_table expects the 'nodes' mapping of podnet_plan, got %s" % type(nodes).__name__)
    header = ("NODE", "NODE IP", "POD CIDR", "GATEWAY")
    rows = [header]
    for name in sorted(nodes, key=lambda n: natural_key(str(n))):
        entry = nodes[name]
        rows.append((
            str(name),
            ", ".join(entry.get("node_ips", [])),
            ", ".join(entry.get("pod_cidrs", [])),
            ", ".join(entry.get("gateways", [])),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


class FilterModule:
    def filters(self):
        return {"plan_table": plan_table}
