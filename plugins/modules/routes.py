#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: routes
short_description: Reconcile all of a node's routes to the other nodes' pod subnets in one call
description:
  - Makes the set of routes marked with the collection's route protocol (I(protocol), default C(158)) in I(table)
    exactly I(routes), for IPv4 and IPv6 at once; one task per node, never one task per route.
  - Reads the table with C(ip -json), computes what to add, what to replace (same destination, wrong gateway or
    device) and what to delete (routes with our protocol that are no longer wanted, for example to a removed
    node), then writes with one C(ip -4 -batch -) and one C(ip -6 -batch -). Routes with any other protocol are
    never replaced or deleted.
  - Before any change every gateway (C(via)) must be on-link from this node, that is, its longest-prefix match in
    the main table (ignoring our own routes) must be a directly connected route (a device, no gateway). The route
    then uses that device. A gateway that is not on-link means the nodes are not L2-adjacent, and host-gw style
    routing cannot work; the error names this node, the peer and the address, and suggests a routed fabric.
  - A wanted destination that already has a route with another protocol in I(table) is an error naming that route
    (the collection never overwrites foreign routes).
  - Fast for thousands of routes (one read per family, indexed lookups, one batch per family).
version_added: 0.1.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
requirements:
  - iproute2 (C(ip)) on the managed node
extends_documentation_fragment:
  - podnet.cluster.attributes
options:
  routes:
    description:
      - Every pod route this node must have. Ignored when I(state=absent).
      - Each is a compact string C(DST via GATEWAY) or C(DST via GATEWAY peer NAME) (cheapest for thousands of
        routes), or a dict with C(dst) (destination network, a peer's pod CIDR), C(via) (the gateway, the peer
        node's address on a link shared with this node, same family) and optionally C(peer) (the peer's name,
        for messages).
      - A string holding several lines (in the list, or instead of the list) is one compact route per line, blank
        lines ignored; the most compact way to pass thousands of routes through templating.
      - Without --diff the result's C(invocation) echoes the first 100 of them only (the counts are whole).
    type: raw
    default: []
  node:
    description:
      - Name of this node, for messages. Defaults to the host name.
    type: str
  protocol:
    description:
      - Route protocol number that marks the collection's routes (C(podnet_route_protocol)). 5 to 255; 0-4 are
        the kernel's own (unspec, redirect, kernel, boot, static), and a number that C(rt_protos) names for another
        routing daemon (ra, dhcp, bird, bgp...) is refused.
    type: int
    default: 158
  table:
    description:
      - Routing table, by name or number. The on-link check always uses the main table.
    type: str
    default: main
  state:
    description:
      - C(present) makes our routes exactly I(routes); C(absent) deletes every route with I(protocol) in I(table).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Routes to every other node's pod subnets
  podnet.cluster.routes:
    node: "{{ inventory_hostname }}"
    routes:
      - {dst: 10.244.2.0/24, via: 192.168.10.12, peer: node2}
      - {dst: "fd00:10:244:2::/64", via: "fd00:192:168:10::12", peer: node2}
      - 10.244.3.0/24 via 192.168.10.13 peer node3

- name: The same routes as one string, one route per line
  podnet.cluster.routes:
    node: "{{ inventory_hostname }}"
    routes: |
      10.244.2.0/24 via 192.168.10.12 peer node2
      fd00:10:244:2::/64 via fd00:192:168:10::12 peer node2
      10.244.3.0/24 via 192.168.10.13 peer node3

- name: Remove every pod route of the collection
  podnet.cluster.routes:
    state: absent
"""

RETURN = r"""
added:
  description: Routes added, one C(DST via GW dev DEV) line each; without --diff the first 100 (see I(added_count)).
  returned: always
  type: list
  elements: str
  sample: ["10.244.2.0/24 via 192.168.10.12 dev eth0"]
added_count:
  description: How many routes were added (without --diff, where I(added) may be cut).
  returned: without --diff
  type: int
replaced_count:
  description: How many routes were replaced (without --diff).
  returned: without --diff
  type: int
removed_count:
  description: How many routes were removed (without --diff).
  returned: without --diff
  type: int
replaced:
  description: Routes replaced because the gateway, device, metric or type differed; C(old) is the route before.
  returned: always
  type: list
  elements: dict
  sample: [{dst: 10.244.3.0/24, via: 192.168.10.13, dev: eth0, peer: node3, old: "10.244.3.0/24 via 192.168.10.99 dev eth0"}]
removed:
  description: Stale routes with our protocol deleted.
  returned: always
  type: list
  elements: dict
  sample: [{dst: 10.244.9.0/24, via: 192.168.10.19, dev: eth0}]
routes:
  description: Number of routes with our protocol after the run (as predicted in check mode).
  returned: always
  type: int
commands:
  description: The batch lines per family, given (or in check mode, that would be given) to C(ip -4 -batch -) and C(ip -6 -batch -).
  returned: with --diff
  type: dict
  sample: {"4": ["route add 10.244.2.0/24 via 192.168.10.12 dev eth0 proto 158 table main"], "6": []}
diff:
  description: Our routes before and after, one sorted line per route (C(DST via GW dev DEV)).
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.engine.routes import apply_routes, expand_routes, plan_routes
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import run_change
from ansible_collections.podnet.cluster.plugins.module_utils.text import capped


# Without --diff the lists of added, replaced and removed routes hold at most this many (the counts are whole).
LISTED = 100


def main():
    module = AnsibleModule(
        argument_spec=dict(
            routes=dict(type="raw", default=[]),
            node=dict(type="str"),
            protocol=dict(type="int", default=158),
            table=dict(type="str", default="main"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["routes"] is None:
        p["routes"] = []
    if isinstance(p["routes"], str):
        # one route per line; a single line is split at commas, as a list option would split it
        p["routes"] = [p["routes"]] if "\n" in p["routes"] else p["routes"].split(",")
    if not isinstance(p["routes"], list):
        module.fail_json(msg="routes must be a list, or a string of one route per line, not %s"
                         % type(p["routes"]).__name__)

    def plan(runner):
        return plan_routes(runner, p["routes"], p["node"], p["protocol"], p["table"], p["state"], diff=module._diff)

    def brief(change):
        for key in ("added", "replaced", "removed"):
            change["%s_count" % key] = len(change[key])
            change[key] = change[key][:LISTED]
        # The module's arguments are echoed in the result (invocation.module_args, shown with -vvv): without --diff
        # the routes are cut like the lists above (thousands of them cost more to return than to reconcile).
        args = dict(p)
        listed = list(expand_routes(p["routes"]))
        if len(listed) > LISTED:
            args["routes"] = capped(listed, LISTED)
        change["invocation"] = dict(module_args=args)

    run_change(module, plan, apply_routes, brief)


if __name__ == "__main__":
    main()
