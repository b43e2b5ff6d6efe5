# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter gce_route_specs: the I(routes) input of podnet.cluster.gce_routes, from the plan and host variables."""

from __future__ import annotations

DOCUMENTATION = r"""
name: gce_route_specs
author: podnet.cluster maintainers (!UNKNOWN)
version_added: 0.2.0
short_description: One route spec per node for podnet.cluster.gce_routes, from the plan
description:
  - For every node of the cluster plan C(podnet_plan), its VM and zone and its pod CIDRs, as the I(routes) option
    of M(podnet.cluster.gce_routes) wants them.
  - The VM is the host's C(podnet_gce_instance); else C(selfLink) or C(name), which the
    C(google.cloud.gcp_compute) inventory plugin sets; else the inventory host name. The zone is
    C(podnet_gce_zone), else the inventory plugin's C(zone).
  - A node without a zone (and no instance URL) is an error naming every such host and the variable to set.
options:
  _input:
    description: The cluster plan (C(podnet_plan)); its C(nodes) maps each host to its C(pod_cidrs).
    type: dict
    required: true
  hostvars:
    description: C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: One Compute Engine route per node pod subnet
  podnet.cluster.gce_routes:
    project: "{{ podnet_gce_project }}"
    network: "{{ podnet_gce_network }}"
    routes: "{{ podnet_plan | podnet.cluster.gce_route_specs(hostvars) }}"
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
_value:
  description: One entry per node, sorted by node name.
  type: list
  elements: dict
  sample: [{node: node-a, instance: node-a, zone: europe-west1-b, dest_ranges: [10.244.0.0/24]}]
"""

from typing import Any, Dict, List, Mapping

from ansible.errors import AnsibleFilterError


def _get(hv: Any, key: str) -> Any:
    try:
        value = hv.get(key) if hasattr(hv, "get") else None
    except Exception:  # an undefined or failing template in an unrelated variable: treat as absent
        return None
    return value if value not in ("", None) else None


def gce_route_specs(plan: Mapping[str, Any], hostvars: Mapping[str, Any]) -> List[Dict[str, Any]]:
    nodes = (plan or {}).get("nodes")
    if not isinstance(nodes, Mapping):
        raise AnsibleFilterError("gce_route_specs: the plan has no 'nodes' table (give it podnet_plan)")
    specs: List[Dict[str, Any]] = []
    missing: List[str] = []
    for node in sorted(nodes):
        hv = hostvars.get(node) if hasattr(hostvars, "get") else None
        hv = hv if hv is not None else {}
        instance = _get(hv, "podnet_gce_instance") or _get(hv, "selfLink") or _get(hv, "name") or node
        zone = _get(hv, "podnet_gce_zone") or _get(hv, "zone")
        if not zone and "/zones/" not in str(instance) and not str(instance).startswith("zones/"):
            missing.append(node)
        entry = nodes[node] or {}
        specs.append({"node": node, "instance": str(instance), "zone": str(zone) if zone else None,
                      "dest_ranges": [str(c) for c in (entry.get("pod_cidrs") or [])]})
    if missing:
        raise AnsibleFilterError(
            "gce_route_specs: no zone for %d node(s): %s; set podnet_gce_zone on each (or podnet_gce_instance to the "
            "VM's selfLink, or use the google.cloud.gcp_compute inventory plugin, which sets zone)"
            % (len(missing), ", ".join(missing)))
    return specs


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"gce_route_specs": gce_route_specs}
