# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Filter node_network: a node's bridge, sysctls, iptables chains and routes from the plan."""

from __future__ import annotations

DOCUMENTATION = r"""
name: node_network
author: podnet.cluster maintainers
version_added: 0.1.0
short_description: What a node's pod network must look like, from the plan
description:
  - Computes, from the cluster plan C(podnet_plan), the data the node role hands to its modules
    unchanged - the bridge addresses, the forwarding sysctls, the C(PODNET-FORWARD) and C(PODNET-MASQ)
    chains (ip-masq-agent style) and the routes to every peer's pod subnets.
  - Destinations never masqueraded are the cluster networks, the node networks and node addresses of
    the plan, link-local, and I(nonmasquerade).
extends_documentation_fragment:
  - podnet.cluster.node_filter
options:
  nonmasquerade:
    description: Extra destinations that keep the pod's address (C(podnet_nonmasquerade_cidrs)).
    type: list
    elements: str
    default: []
  masquerade:
    description: Whether to build the masquerade chain.
    type: bool
    default: true
  routes:
    description: Whether to list routes to the peers' pod subnets (the C(l2_routes) fabric).
    type: bool
    default: true
  route_protocol:
    description: The route protocol number that marks the collection's routes.
    type: int
    default: 158
"""

EXAMPLES = r"""
- name: Compute this node's network
  ansible.builtin.set_fact:
    __podnet_net: "{{ podnet_plan | podnet.cluster.node_network(inventory_hostname, nonmasquerade=podnet_nonmasquerade_cidrs) }}"
"""

RETURN = r"""
_value:
  description: The node's network.
  type: dict
  contains:
    bridge_addresses:
      description: Gateway addresses with prefix, for the bridge.
      type: list
      elements: str
    owned_cidrs:
      description: Networks whose addresses on the bridge belong to the collection.
      type: list
      elements: str
    sysctl:
      description: Forwarding sysctls to set, per family in use.
      type: dict
    iptables:
      description: Arguments for M(podnet.cluster.iptables_chains), one entry per family and table.
      type: list
      elements: dict
    routes:
      description: "Peer routes: C(dst), C(via), C(peer)."
      type: list
      elements: dict
    route_protocol:
      description: The route protocol number.
      type: int
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import node_network as _node_network
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError


def node_network(plan, hostname, nonmasquerade=None, masquerade=True, routes=True, route_protocol=158):
    try:
        return _node_network(plan, str(hostname), list(nonmasquerade or []), bool(masquerade), bool(routes),
                             int(route_protocol))
    except PlanError as exc:
        raise AnsibleFilterError("podnet.cluster.node_network: %s" % exc)


class FilterModule:
    def filters(self):
        return {"node_network": node_network}
