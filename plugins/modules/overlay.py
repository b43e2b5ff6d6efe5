#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: overlay
short_description: Reconcile a node's static VXLAN overlay (devices and every peer's entries) in one call
description:
  - The overlay part of the node engine (fabric C(vxlan)) on its own; M(podnet.cluster.node_state) runs the same
    code as one part of the node document. The overlay benchmark (bench/overlay_invocation.py) calls it.
  - Makes, per underlay family, one VXLAN device (I(vni), I(port), C(local) the node IP, learning off, the given
    VTEP MAC set at creation, the given VTEP addresses, the MTU of the link holding the local address minus 50
    over IPv4 or 70 over IPv6), and per peer line a permanent neighbour entry (VTEP address to MAC), a permanent
    FDB entry (MAC to the peer's node IP) and the route to the peer's block via its VTEP address C(onlink) with
    I(protocol), in that order.
  - The devices are the collection's alone; every permanent neighbour and FDB entry on them and every route through
    them with I(protocol) that is not wanted is removed. Other devices are never read as ours.
  - Reads with C(ip -json) and C(bridge -json), writes with one C(ip -batch) for neighbours, one C(bridge -batch)
    for FDB entries and one C(ip -batch) for routes.
  - A peer block that already has a route with another protocol is an error (never overwritten).
  - A VXLAN device that is not the collection's on the same UDP port and underlay family (an C(external) one counts
    for both families) is an error before any change, naming the device, the port and C(podnet_vxlan_port) - the
    kernel would refuse to make the device (the same VNI), or to bring it up (C(Address already in use)), or share
    the port with it, and the INPUT chain of the fabric would then drop that device's traffic from every host that
    is not a peer.
version_added: 0.2.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
requirements:
  - iproute2 (C(ip), C(bridge)) on the managed node; C(ethtool) when I(tx_checksum_offload) is set
extends_documentation_fragment:
  - podnet.cluster.attributes
options:
  vni:
    description: The VXLAN network identifier, 1 to 16777215.
    type: int
    required: true
  port:
    description: The UDP port (4789 is the IANA port; flannel uses 8472).
    type: int
    default: 4789
  devices:
    description:
      - One per underlay family - C(name), C(family) (4 or 6), C(local) (this node's node IP of that family),
        C(mac) (the VTEP MAC) and C(addresses) (the VTEP addresses - of each of the node's blocks the first
        address as a /32 for IPv4, the last as a /128 for IPv6; IPv6 ones are added with C(nodad)).
    type: list
    elements: dict
    default: []
  peers:
    description:
      - One line per peer and pod family - C(BLOCK via VTEP mac MAC dst NODE_IP peer NAME); a string of lines
        (the compact form for thousands of peers) or a list of lines. The underlay family of C(NODE_IP) picks the
        device.
    type: raw
    default: ""
  tx_checksum_offload:
    description: Turn C(tx-checksum-ip-generic) off (C(false)) or on (C(true)) on the devices; unset leaves it.
    type: bool
  node:
    description: Name of this node, for messages.
    type: str
  protocol:
    description: Route protocol number of the collection's routes.
    type: int
    default: 158
  state:
    description: C(present) makes the overlay; C(absent) deletes the named I(devices) (and their entries with them).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: A node's overlay over IPv4, two peers
  podnet.cluster.overlay:
    vni: 1
    devices:
      - {name: podnet.vx4, family: 4, local: 192.168.10.11, mac: "0a:1b:2c:3d:4e:5f", addresses: [10.244.0.0/32]}
    peers: |
      10.244.1.0/24 via 10.244.1.0 mac 6e:01:02:03:04:05 dst 192.168.20.12 peer node2
      10.244.2.0/24 via 10.244.2.0 mac 8a:01:02:03:04:06 dst 192.168.30.13 peer node3

- name: Remove it
  podnet.cluster.overlay:
    vni: 1
    devices: [{name: podnet.vx4, family: 4, local: 192.168.10.11, mac: "0a:1b:2c:3d:4e:5f"}]
    state: absent
"""

RETURN = r"""
devices:
  description: The names of the wanted devices.
  returned: always
  type: list
  elements: str
mtu:
  description: Each device's MTU (the uplink's minus the VXLAN overhead).
  returned: always
  type: dict
  sample: {podnet.vx4: 1450}
entries:
  description: Wanted kernel entries (neighbours, FDB entries and routes together).
  returned: always
  type: int
added:
  description: What was (or in check mode would be) added, at most 100 lines.
  returned: always
  type: list
  elements: str
replaced:
  description: What was replaced (a peer's new MAC, node IP or VTEP), at most 100 lines.
  returned: always
  type: list
  elements: str
removed:
  description: What was removed (peers that left, unwanted devices), at most 100 lines.
  returned: always
  type: list
  elements: str
recreated:
  description: Devices deleted and made again, with the reason (another VNI, local address or port).
  returned: always
  type: list
  elements: str
commands:
  description: The batch lines given (or that would be given) to C(ip -batch) and C(bridge -batch), by step.
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay import apply_overlay, plan_overlay
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import run_change
from ansible_collections.podnet.cluster.plugins.module_utils.text import capped


# Without --diff the echoed peer lines are cut to this many.
LISTED = 100


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vni=dict(type="int", required=True),
            port=dict(type="int", default=4789),
            devices=dict(type="list", elements="dict", default=[]),
            peers=dict(type="raw", default=""),
            tx_checksum_offload=dict(type="bool"),
            node=dict(type="str"),
            protocol=dict(type="int", default=158),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["vni"] <= 16777215:
        module.fail_json(msg="vni %d is outside 1..16777215" % p["vni"])
    if not 1 <= p["port"] <= 65535:
        module.fail_json(msg="port %d is outside 1..65535" % p["port"])
    spec = dict(vni=p["vni"], port=p["port"], devices=p["devices"], peers=p["peers"] or "")
    if p["tx_checksum_offload"] is not None:
        spec["tx_checksum_offload"] = p["tx_checksum_offload"]
    node = p["node"] or "?"

    def plan(runner):
        if p["state"] == "present":
            return plan_overlay(runner, spec, node, p["protocol"], "present", diff=module._diff)
        return plan_overlay(runner, None, node, p["protocol"], "absent", old=spec, diff=module._diff)

    def brief(change):
        # the echoed arguments (invocation.module_args, shown with -vvv): the first peer lines, not thousands
        args = dict(p)
        lines = p["peers"].splitlines() if isinstance(p["peers"], str) else list(p["peers"] or [])
        args["peers"] = capped(lines, LISTED) if len(lines) > LISTED else p["peers"]
        change["invocation"] = dict(module_args=args)

    run_change(module, plan, apply_overlay, brief)


if __name__ == "__main__":
    main()
