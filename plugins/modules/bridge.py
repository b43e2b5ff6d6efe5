#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bridge
short_description: Own the node's pod bridge (for example cbr0) and its gateway addresses
description:
  - Creates the Linux bridge I(name) if it is missing, sets its MTU, adds the gateway addresses of the node's pod
    subnets and brings it up.
  - Only addresses inside I(owned_cidrs) belong to the collection. Such addresses that are not in I(addresses) are
    removed; every other address on the bridge (and the kernel's IPv6 link-local address) is left alone.
  - Reads the current state with C(ip -json), computes every change first and applies them in one
    C(ip -batch -) call. Nothing is written in check mode. A second run with the same parameters changes nothing.
  - Fails before any change if a link called I(name) exists and is not a bridge.
  - Addresses that failed duplicate address detection are re-added only when they are the collection's; others are never touched.
version_added: 0.1.0
author:
  - podnet.cluster maintainers
requirements:
  - iproute2 (C(ip)) on the managed node
extends_documentation_fragment:
  - podnet.cluster.attributes
options:
  name:
    description:
      - Name of the bridge (at most 15 characters).
    type: str
    required: true
  addresses:
    description:
      - Interface addresses the bridge must hold, in C(address/prefix) form, for example C(10.244.1.1/24) and
        C(fd00:10:244:1::1/64). IPv4 addresses get C(brd +); IPv6 addresses are added with C(nodad).
    type: list
    elements: str
    default: []
  owned_addresses:
    description:
      - Addresses (C(address/prefix)) recorded as the collection's own, for example gateways of an earlier plan;
        removed when not in I(addresses), wherever they lie.
    type: list
    elements: str
    default: []
  owned_cidrs:
    description:
      - Networks whose addresses on the bridge the collection owns (normally the cluster CIDRs). An address on the
        bridge inside one of them that is not in I(addresses) is removed, also when only its prefix length
        differs. Addresses outside all of them are never touched.
    type: list
    elements: str
    default: []
  mtu:
    description:
      - MTU of the bridge. When unset, I(mtu_from_address) decides; when both are unset the MTU is not managed.
    type: int
  mtu_from_address:
    description:
      - An IP address of this node (for example its node IP). The bridge gets the MTU of the link holding it, so that
        pods never send frames bigger than the node's uplink carries. Used only when I(mtu) is unset. It is an error
        when no link holds the address.
    type: str
  state:
    description:
      - C(present) creates and configures the bridge.
      - C(absent) removes the owned addresses; it deletes the bridge itself only when the link is a bridge and carries
        no other address (IPv6 link-local addresses do not count). Otherwise the link is kept and a warning says why.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Pod bridge with the gateway of both pod subnets, MTU of the node's uplink
  podnet.cluster.bridge:
    name: cbr0
    addresses:
      - 10.244.1.1/24
      - fd00:10:244:1::1/64
    owned_cidrs:
      - 10.244.0.0/16
      - fd00:10:244::/48
    mtu_from_address: "{{ podnet_node_ip }}"

- name: Remove the bridge (or only the collection's addresses when something else uses it)
  podnet.cluster.bridge:
    name: cbr0
    owned_cidrs: [10.244.0.0/16]
    state: absent
"""

RETURN = r"""
name:
  description: Name of the bridge.
  returned: always
  type: str
  sample: cbr0
mtu:
  description: MTU of the bridge after the run (as predicted in check mode); null when the bridge does not exist.
  returned: always
  type: int
  sample: 1450
addresses:
  description: Every address on the bridge after the run (as predicted in check mode), IPv6 link-local excluded.
  returned: always
  type: list
  elements: str
  sample: [10.244.1.1/24, fd00:10:244:1::1/64]
added:
  description: Addresses added.
  returned: always
  type: list
  elements: str
removed:
  description: Owned addresses removed.
  returned: always
  type: list
  elements: str
created:
  description: Whether the bridge was created.
  returned: always
  type: bool
deleted:
  description: Whether the bridge was deleted (state=absent).
  returned: always
  type: bool
commands:
  description: The lines given to C(ip -batch -) (also in check mode, where they are not run).
  returned: always
  type: list
  elements: str
  sample: ["link add name cbr0 mtu 1450 type bridge", "address add 10.244.1.1/24 brd + dev cbr0", "link set dev cbr0 up"]
mtu_source:
  description: Link whose MTU was taken (I(mtu_from_address)).
  returned: when I(mtu_from_address) was used
  type: str
  sample: eth0
diff:
  description: Before and after text of the bridge (link line and addresses).
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.engine.bridge import apply_bridge, plan_bridge
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import (
    EngineError,
    ModuleRunner,
    diff_only,
    fail_module,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            addresses=dict(type="list", elements="str", default=[]),
            owned_cidrs=dict(type="list", elements="str", default=[]),
            owned_addresses=dict(type="list", elements="str", default=[]),
            mtu=dict(type="int"),
            mtu_from_address=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    runner = ModuleRunner(module)
    try:
        change = plan_bridge(runner, p["name"], p["addresses"], p["owned_cidrs"], p["mtu"], p["mtu_from_address"],
                             p["state"], p["owned_addresses"])
        if change["changed"] and not module.check_mode:
            apply_bridge(runner, change)
    except EngineError as exc:
        fail_module(module, exc)
    for warning in change.pop("warnings"):
        module.warn(warning)
    module.exit_json(**diff_only(module, change))


if __name__ == "__main__":
    main()
