# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter router_routes: one compact route per node pod subnet, via that node, for a router."""

from __future__ import annotations

DOCUMENTATION = r"""
name: router_routes
author: podnet.cluster maintainers (!UNKNOWN)
version_added: 0.2.0
short_description: The routes a router of a routed fabric needs, from the plan
description:
  - One C(DST via NODE_IP peer NODE) string per pod subnet of every node of the plan, each via that node's IP of
    the same family; the form M(podnet.cluster.routes) takes, cheap for thousands of routes.
options:
  _input:
    description: The cluster plan (C(podnet_plan)).
    type: dict
    required: true
  fabrics:
    description:
      - Each node's fabric (C(__podnet_checked.fabrics), from the node role's C(tasks/validate.yml)); only the nodes
        of fabric C(router) are routed, so a router of a cluster that left the fabric gets no routes (its old ones
        are removed). Omitted, every node of the plan is routed.
    type: dict
"""

EXAMPLES = r"""
- name: Pod routes on the router
  podnet.cluster.routes:
    routes: "{{ podnet_plan | podnet.cluster.router_routes }}"

- name: Pod routes on the router, for the nodes of fabric router only
  podnet.cluster.routes:
    routes: "{{ podnet_plan | podnet.cluster.router_routes(__podnet_checked.fabrics) }}"
"""

RETURN = r"""
_value:
  description: Route strings, for example C(10.244.1.0/24 via 192.168.50.12 peer node-b).
  type: list
  elements: str
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import peer_routes
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError


def router_routes(plan, fabrics=None):
    wanted = None
    if fabrics is not None:
        if not isinstance(fabrics, Mapping):
            raise AnsibleFilterError("podnet.cluster.router_routes: fabrics must map each node to its fabric, not %s"
                                     % type(fabrics).__name__)
        wanted = {str(node) for node, fabric in fabrics.items() if fabric == "router"}
    try:
        return [route for node, route in peer_routes(plain(plan)) if wanted is None or node in wanted]
    except PlanError as exc:
        raise AnsibleFilterError("podnet.cluster.router_routes: %s" % exc)


class FilterModule:
    def filters(self):
        return {"router_routes": router_routes}
