# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the action podnet.cluster.plan_report (plugins/action/plan_report.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: plan_report
short_description: Show the pod-network plan as a table, and write it as JSON for other tools
version_added: 0.2.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
description:
  - Runs on the controller only (an action); reads the plan registered by M(podnet.cluster.plan).
  - Prints the plan as text, the same under every stdout callback (not a list of strings) - the fabric and the
    routers, each family's capacity ("3 of 256 /24 blocks used", departed nodes' blocks included), one row per node
    and family (node IP, pod CIDR, gateway), rows this run adds marked C(+ (new)), rows whose blocks change marked
    C(~ (changed)), and the departed nodes that still hold blocks.
  - With I(export), writes the plan as JSON to that path (C(podnet_plan_export)) - every node with its C(status)
    (new, changed, unchanged), the capacity, the fabric and routers, the departed and released blocks. Written in
    check mode too - a report the user asked for, not state.
options:
  plan_var:
    description: The variable the plan task was registered as.
    type: str
    default: podnet_plan
  fabric:
    description: The fabric (C(podnet_fabric)).
    type: str
    default: l2_routes
  routers:
    description: The hosts that route the pod subnets (the group C(podnet_routers), fabric C(router)).
    type: list
    elements: str
    default: []
  export:
    description: Path of the JSON file to write (C(podnet_plan_export)); unset writes none.
    type: path
  show:
    description: Print the table.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The JSON export is written in check mode too.
  diff_mode:
    support: none
    description: Nothing is compared; the table is the output.
  platform:
    support: full
    platforms: all
    description: Runs on the controller only (an action plugin).
"""

EXAMPLES = r"""
- name: Show the plan, and write it for other tools
  podnet.cluster.plan_report:
    fabric: "{{ podnet_fabric | default('l2_routes') }}"
    routers: "{{ groups['podnet_routers'] | default([]) }}"
    export: "{{ podnet_plan_export | default(omit, true) }}"
  run_once: true
"""

RETURN = r"""
table:
  description: The lines printed.
  returned: always
  type: list
  elements: str
export:
  description: The path written, with I(export).
  returned: with export
  type: str
"""
