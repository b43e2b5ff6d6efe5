#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/report.py)
# on the controller; this file carries the documentation.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: report
short_description: Write a self-contained HTML picture of the plan, the fabric and the verify matrix
description:
  - Renders, on the controller, one HTML page with inline CSS and inline SVG and nothing else (no script, no font,
    no image, no address to fetch), so that it opens anywhere, offline, and can be attached to a ticket.
  - The drawing shows every node of the plan, grouped by its underlay segment (its node networks), with its node IPs
    and its pod subnets of every family and their gateways, and the fabric between them - the segment and the routes
    between nodes for C(l2_routes), the router(s) of C(podnet_routers) for C(router), Compute Engine for C(gce), the
    shared segment the uplinks are enslaved into for C(l2_bridge), the overlay for C(vxlan).
  - With I(kind=verify) the page starts with the verify matrices coloured by result - ok, failed (the reason is the
    cell's tooltip) or not probed. Up to 30 nodes each check and family is a grid; above, its counts and the failing
    cells grouped by source and reason, sources with the same failures together.
  - Written atomically (a temporary file in the same directory, then renamed), mode 0644, only when the content
    changes; I(dir) is created when missing. Never written in check mode.
  - The playbooks C(podnet.cluster.plan) and C(podnet.cluster.verify) call it, C(run_once), when C(podnet_report_dir)
    is set.
version_added: 0.2.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
options:
  dir:
    description:
      - The directory on the controller (C(podnet_report_dir)).
    type: path
    required: true
  kind:
    description:
      - C(plan) - the drawing and the plan table. C(verify) - the verify matrices first, then the same.
    type: str
    choices: [plan, verify]
    default: plan
  filename:
    description:
      - The file name in I(dir). Default C(plan.html) or C(verify.html), after I(kind).
    type: str
  title:
    description:
      - The page title. Default C(podnet.cluster plan) or C(podnet.cluster verify) and the number of nodes.
    type: str
  plan:
    description:
      - The registered plan. Default the variable C(podnet_plan).
    type: dict
  verify:
    description:
      - The judged verify result, for I(kind=verify). Default the variable C(podnet_verify_result).
    type: dict
  fabric:
    description:
      - C(l2_routes), C(router), C(gce), C(l2_bridge) or C(vxlan). Default the variable C(podnet_fabric), else C(l2_routes).
    type: str
  routers:
    description:
      - The routers of the C(router) fabric (inventory names). Default the hosts of the group named by
        C(podnet_router_group) (C(podnet_routers)); each is shown with its C(podnet_node_ip) or C(ansible_host).
    type: list
    elements: str
  bridge:
    description:
      - The bridge name. Default the variable C(podnet_bridge), else C(cbr0).
    type: str
  gce_project:
    description:
      - The Compute Engine project shown for C(gce). Default the variable C(podnet_gce_project).
    type: str
  gce_network:
    description:
      - The VPC network shown for C(gce). Default the variable C(podnet_gce_network).
    type: str
  vxlan_vni:
    description:
      - The VXLAN network identifier shown for C(vxlan). Default the variable C(podnet_vxlan_vni).
    type: int
  vxlan_port:
    description:
      - The VXLAN UDP port shown for C(vxlan). Default the variable C(podnet_vxlan_port).
    type: int
attributes:
  check_mode:
    support: full
    description: Renders the page and reports where it would go; writes nothing.
  diff_mode:
    support: none
    description: No diff of the page is shown.
  platform:
    support: full
    platforms: all
    description: Runs on the controller only.
notes:
  - The report is a file on the controller, in a directory the user chose. The plan playbook otherwise changes
    nothing; with C(podnet_report_dir) set it writes this one file there.
seealso:
  - module: podnet.cluster.plan
  - module: podnet.cluster.probe
"""

EXAMPLES = r"""
- name: Write the picture of the plan
  podnet.cluster.report:
    dir: "{{ podnet_report_dir }}"
  run_once: true
  when: podnet_report_dir | length > 0

- name: Write the verify report, the matrix coloured by result
  podnet.cluster.report:
    dir: /var/tmp/podnet
    kind: verify
  run_once: true
"""

RETURN = r"""
path:
  description: The report file.
  returned: always
  type: str
  sample: /var/tmp/podnet/verify.html
nodes:
  description: How many nodes the report shows.
  returned: always
  type: int
  sample: 3
fabric:
  description: The fabric drawn.
  returned: always
  type: str
  sample: l2_routes
failed_cells:
  description: How many cells of the verify matrices failed (0 for I(kind=plan)).
  returned: always
  type: int
  sample: 0
"""
