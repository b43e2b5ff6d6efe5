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
version_added: 0.1.0
author:
  - podnet.cluster maintainers
requirements:
  - iproute2 (C(ip)) on the managed node
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
notes:
  - Supports check mode and diff mode.
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
  returned: always
  type: dict
"""

import ipaddress

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    find_link_with_address,
    get_link,
    link_kind,
    run_ip_batch,
    run_ip_json,
)


def _parse_list(module, values, kind):
    res = []
    for value in values:
        try:
            if kind == "interface":
                item = ipaddress.ip_interface(str(value).strip())
                if "/" not in str(value):
                    raise ValueError("missing /prefix")
            else:
                item = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError as exc:
            module.fail_json(msg="%s %r is not a valid %s: %s" % (
                "address" if kind == "interface" else "owned_cidrs entry", value,
                "CIDR interface address (address/prefix)" if kind == "interface" else "network", exc))
        res.append(item)
    return res


def _is_kernel_ll(iface):
    return iface.version == 6 and iface.ip.is_link_local


def _render(exists, name, mtu, up, addrs):
    if not exists:
        return ""
    lines = ["link %s type bridge mtu %s %s" % (name, mtu, "up" if up else "down")]
    lines.extend("address %s" % a for a in sorted(addrs, key=lambda i: (i.version, i.ip, i.network.prefixlen)))
    return "\n".join(lines) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            addresses=dict(type="list", elements="str", default=[]),
            owned_cidrs=dict(type="list", elements="str", default=[]),
            mtu=dict(type="int"),
            mtu_from_address=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]
    state = p["state"]
    if not name or len(name) > 15 or "/" in name or any(c.isspace() for c in name):
        module.fail_json(msg="bridge name %r is not a valid link name (1-15 characters, no '/' or space)" % name)

    desired = _parse_list(module, p["addresses"], "interface")
    owned = _parse_list(module, p["owned_cidrs"], "network")
    seen = {}
    for iface in desired:
        if iface.ip in seen:
            module.fail_json(msg="address %s is listed twice for bridge %s (also as %s)" % (iface, name, seen[iface.ip]))
        seen[iface.ip] = iface
        if iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in (
                iface.network.network_address, iface.network.broadcast_address):
            module.fail_json(msg="address %s on bridge %s is the network or broadcast address of %s; use a host "
                                 "address such as %s" % (iface, name, iface.network, iface.network.network_address + 1))
    warnings = []
    for iface in desired:
        if owned and not any(iface.ip in net for net in owned):
            warnings.append("address %s of bridge %s is outside owned_cidrs (%s): a later run will not remove it"
                            % (iface, name, ", ".join(str(n) for n in owned)))
    if p["mtu"] is not None and not 68 <= p["mtu"] <= 65535:
        module.fail_json(msg="mtu %s of bridge %s is outside 68..65535" % (p["mtu"], name))

    # ---- current state
    link = get_link(module, name)
    kind = link_kind(link)
    exists = link is not None
    if exists and kind != "bridge" and state == "present":
        module.fail_json(msg="link %s exists and is %s, not a bridge; podnet.cluster will not replace a link it "
                             "does not own: rename or delete it, or choose another podnet bridge name"
                         % (name, ("a %s link" % kind) if kind else "a plain (no kind) link"))
    current = []
    dadfailed = set()
    if exists:
        addr_data = run_ip_json(module, ["addr", "show", "dev", name], numeric=False)
        for entry in addr_data:
            for info in entry.get("addr_info", []):
                if info.get("family") not in ("inet", "inet6"):
                    continue
                iface = ipaddress.ip_interface("%s/%s" % (info["local"], info["prefixlen"]))
                if _is_kernel_ll(iface):
                    continue
                current.append(iface)
                if info.get("dadfailed"):
                    dadfailed.add(iface)

    cur_mtu = link.get("mtu") if exists else None
    cur_up = exists and "UP" in (link.get("flags") or [])

    desired_mtu = p["mtu"]
    mtu_source = None
    if state == "present" and desired_mtu is None and p["mtu_from_address"]:
        try:
            ipaddress.ip_address(p["mtu_from_address"].split("/")[0])
        except ValueError:
            module.fail_json(msg="mtu_from_address %r is not an IP address" % p["mtu_from_address"])
        all_addrs = run_ip_json(module, ["addr", "show"], numeric=False)
        holder = find_link_with_address(all_addrs, p["mtu_from_address"])
        if holder is None:
            module.fail_json(msg="mtu_from_address %s: no link on this node holds that address, so the MTU of "
                                 "bridge %s cannot be derived from it (set mtu, or fix the node IP)"
                             % (p["mtu_from_address"], name))
        desired_mtu = int(holder["mtu"])
        mtu_source = holder["ifname"]

    def is_owned(iface):
        return any(iface.ip in net for net in owned)

    commands = []
    added, removed = [], []
    created = deleted = False
    warnings_absent = []

    if state == "present":
        if not exists:
            commands.append("link add name %s%s type bridge" % (
                name, (" mtu %d" % desired_mtu) if desired_mtu is not None else ""))
            created = True
        elif desired_mtu is not None and cur_mtu != desired_mtu:
            commands.append("link set dev %s mtu %d" % (name, desired_mtu))
        desired_set = set(desired)
        for iface in current:
            if (iface not in desired_set and is_owned(iface)) or iface in dadfailed:
                commands.append("address del %s dev %s" % (iface, name))
                removed.append(str(iface))
        current_ok = set(current) - dadfailed
        for iface in desired:
            if iface in current_ok:
                continue
            if iface.version == 4:
                commands.append("address add %s brd + dev %s" % (iface, name))
            else:
                commands.append("address add %s dev %s nodad" % (iface, name))
            added.append(str(iface))
        if not cur_up:
            commands.append("link set dev %s up" % name)
        after_addrs = [i for i in current if str(i) not in removed] + [ipaddress.ip_interface(a) for a in added]
        after_mtu = desired_mtu if desired_mtu is not None else (cur_mtu if exists else 1500)
        after_exists, after_up = True, True
    else:
        after_addrs = list(current)
        after_mtu, after_exists, after_up = cur_mtu, exists, cur_up
        if exists:
            foreign = [i for i in current if not is_owned(i)]
            if kind == "bridge" and not foreign:
                commands.append("link del dev %s" % name)
                removed = [str(i) for i in current]
                deleted = True
                after_addrs, after_mtu, after_exists, after_up = [], None, False, False
            else:
                for iface in current:
                    if is_owned(iface):
                        commands.append("address del %s dev %s" % (iface, name))
                        removed.append(str(iface))
                after_addrs = foreign
                if kind != "bridge":
                    warnings_absent.append("link %s is not a bridge (%s): kept it, removed only owned addresses"
                                           % (name, kind or "no kind"))
                else:
                    warnings_absent.append("bridge %s carries addresses outside owned_cidrs (%s): kept it, removed "
                                           "only owned addresses" % (name, ", ".join(str(i) for i in foreign)))

    changed = bool(commands)
    if changed and not module.check_mode:
        run_ip_batch(module, commands)

    for w in warnings + warnings_absent:
        module.warn(w)
    before_text = _render(exists, name, cur_mtu, cur_up, current)
    after_text = _render(after_exists, name, after_mtu, after_up, after_addrs)
    result = dict(
        changed=changed,
        name=name,
        mtu=after_mtu,
        addresses=[str(a) for a in sorted(after_addrs, key=lambda i: (i.version, i.ip))],
        added=added,
        removed=removed,
        created=created,
        deleted=deleted,
        commands=commands,
        diff=dict(before=before_text, after=after_text,
                  before_header="bridge %s" % name, after_header="bridge %s" % name),
    )
    if mtu_source:
        result["mtu_source"] = mtu_source
    module.exit_json(**result)


if __name__ == "__main__":
    main()
