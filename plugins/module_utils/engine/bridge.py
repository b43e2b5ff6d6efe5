# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The bridge engine: a Linux bridge holding the pod gateways (standard library only).

``plan_bridge`` reads the link and its addresses and returns the whole change (``ip -batch`` lines,
before/after text); ``apply_bridge`` runs it. An address belongs to podnet.cluster when it lies inside
``owned_cidrs`` or is listed in ``owned_addresses`` (recorded on the node); only those are ever removed.
"""

from __future__ import annotations

import ipaddress
import os

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    find_link_with_address,
    get_link,
    link_kind,
    run_ip_batch,
    run_ip_json,
)
from ansible_collections.podnet.cluster.plugins.module_utils.ifname import ifname_problem


def _parse(values, kind):
    res = []
    for value in values or []:
        try:
            if kind == "interface":
                if "/" not in str(value):
                    raise ValueError("missing /prefix")
                item = ipaddress.ip_interface(str(value).strip())
            else:
                item = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError as exc:
            raise EngineError("%s %r is not a valid %s: %s" % (
                "address" if kind == "interface" else "owned_cidrs entry", value,
                "CIDR interface address (address/prefix)" if kind == "interface" else "network", exc))
        res.append(item)
    return res


def _is_kernel_ll(iface):
    return iface.version == 6 and iface.ip.is_link_local


def _sorted(addrs):
    return sorted(addrs, key=lambda i: (i.version, i.ip, i.network.prefixlen))


def render(exists, name, mtu, up, addrs):
    if not exists:
        return ""
    lines = ["link %s type bridge mtu %s %s" % (name, mtu, "up" if up else "down")]
    lines.extend("address %s" % a for a in _sorted(addrs))
    return "\n".join(lines) + "\n"


def read_bridge(runner, name):
    """(link or None, [ip_interface], {dadfailed ip_interface}) of ``name``; kernel link-local omitted."""
    link = get_link(runner, name)
    current, dadfailed = [], set()
    if link is not None:
        for entry in run_ip_json(runner, ["addr", "show", "dev", name], numeric=False):
            for info in entry.get("addr_info", []):
                if info.get("family") not in ("inet", "inet6"):
                    continue
                iface = ipaddress.ip_interface("%s/%s" % (info["local"], info["prefixlen"]))
                if _is_kernel_ll(iface):
                    continue
                current.append(iface)
                if info.get("dadfailed"):
                    dadfailed.add(iface)
    return link, current, dadfailed


def resolve_mtu(runner, mtu, mtu_from_address, name):
    """(MTU, source link) wanted for the bridge: ``mtu`` or the MTU of the link holding the address."""
    if mtu is not None:
        if not 68 <= int(mtu) <= 65535:
            raise EngineError("mtu %s of bridge %s is outside 68..65535" % (mtu, name))
        return int(mtu), None
    if not mtu_from_address:
        return None, None
    try:
        ipaddress.ip_address(str(mtu_from_address).split("/", maxsplit=1)[0])
    except ValueError:
        raise EngineError("mtu_from_address %r is not an IP address" % mtu_from_address)
    holder = find_link_with_address(run_ip_json(runner, ["addr", "show"], numeric=False), mtu_from_address)
    if holder is None:
        raise EngineError("mtu_from_address %s: no link on this node holds that address, so the MTU of bridge %s "
                          "cannot be derived from it (set mtu, or fix the node IP)" % (mtu_from_address, name))
    return int(holder["mtu"]), holder["ifname"]


def plan_bridge(runner, name, addresses=(), owned_cidrs=(), mtu=None, mtu_from_address=None, state="present",
                owned_addresses=(), keep_link=False):
    """The whole change of bridge ``name``; raises EngineError before anything is written.

    With state=absent the bridge is deleted when it carries no foreign address, unless ``keep_link`` (a
    bridge that existed before podnet.cluster): then only the owned addresses go.
    """
    problem = ifname_problem(name)
    if problem:
        raise EngineError("bridge name %r %s" % (name, problem))
    desired = _parse(addresses, "interface")
    owned = _parse(owned_cidrs, "network")
    owned_exact = {ipaddress.ip_interface(str(a)) for a in owned_addresses or []}
    seen = {}
    for iface in desired:
        if iface.ip in seen:
            raise EngineError("address %s is listed twice for bridge %s (also as %s)" % (iface, name, seen[iface.ip]))
        seen[iface.ip] = iface
        if iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in (
                iface.network.network_address, iface.network.broadcast_address):
            raise EngineError("address %s on bridge %s is the network or broadcast address of %s; use a host "
                              "address such as %s" % (iface, name, iface.network, iface.network.network_address + 1))
    warnings = []
    for iface in desired:
        if owned and not any(iface.ip in net for net in owned):
            warnings.append("address %s of bridge %s is outside owned_cidrs (%s): a later run will not remove it"
                            % (iface, name, ", ".join(str(n) for n in owned)))

    link, current, dadfailed = read_bridge(runner, name)
    kind = link_kind(link)
    exists = link is not None
    if exists and kind != "bridge" and state == "present":
        raise EngineError("link %s exists and is %s, not a bridge; podnet.cluster will not replace a link it does "
                          "not own: rename or delete it, or choose another podnet bridge name (podnet_bridge)"
                          % (name, ("a %s link" % kind) if kind else "a plain (no kind) link"))
    cur_mtu = link.get("mtu") if exists else None
    cur_up = exists and "UP" in (link.get("flags") or [])

    def is_owned(iface):
        return iface in owned_exact or any(iface.ip in net for net in owned)

    commands, added, removed = [], [], []
    created = deleted = False
    mtu_source = None
    if state == "present":
        desired_mtu, mtu_source = resolve_mtu(runner, mtu, mtu_from_address, name)
        if not exists:
            commands.append("link add name %s type bridge" % name)
            if desired_mtu is not None and desired_mtu != 1500:
                # set after creation, not at it: only a change of the bridge's MTU marks it as the user's; else the
                # kernel follows its ports (the smallest one's MTU, 1500 when the last one leaves), above an
                # overlay's 1450. 1500 is what the bridge is made with.
                commands.append("link set dev %s mtu %d" % (name, desired_mtu))
            created = True
        elif desired_mtu is not None and cur_mtu != desired_mtu:
            commands.append("link set dev %s mtu %d" % (name, desired_mtu))
        desired_set = set(desired)
        for iface in current:
            # Ours and no longer wanted, or ours and failed DAD (re-added below); never anybody else's.
            if is_owned(iface) and (iface not in desired_set or iface in dadfailed):
                commands.append("address del %s dev %s" % (iface, name))
                removed.append(str(iface))
        current_ok = set(current) - {i for i in dadfailed if is_owned(i)}
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
            if kind == "bridge" and not foreign and not keep_link:
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
                    warnings.append("link %s is not a bridge (%s): kept it, removed only owned addresses"
                                    % (name, kind or "no kind"))
                elif foreign:
                    warnings.append("bridge %s carries addresses outside owned_cidrs (%s): kept it, removed only "
                                    "owned addresses" % (name, ", ".join(str(i) for i in foreign)))
    result = dict(
        changed=bool(commands),
        name=name,
        mtu=after_mtu,
        addresses=[str(a) for a in sorted(after_addrs, key=lambda i: (i.version, i.ip))],
        added=added,
        removed=removed,
        created=created,
        deleted=deleted,
        commands=commands,
        warnings=warnings,
        diff=dict(before=render(exists, name, cur_mtu, cur_up, current),
                  after=render(after_exists, name, after_mtu, after_up, after_addrs),
                  before_header="bridge %s" % name, after_header="bridge %s" % name),
    )
    if mtu_source:
        result["mtu_source"] = mtu_source
    return result


def apply_bridge(runner, change):
    """The change's commands; a bridge it creates gets ``accept_dad`` 0 before it goes up (see _no_dad)."""
    commands = list(change["commands"])
    if change.get("created") and commands and commands[0].startswith("link add "):
        run_ip_batch(runner, commands[:1])
        _no_dad(change["name"])
        commands = commands[1:]
    run_ip_batch(runner, commands)


def _no_dad(name):
    """No duplicate address detection on a bridge podnet.cluster makes (its gateways are added with nodad).

    Until its link-local address has passed detection (one to two seconds after it goes up, longer while other
    work holds the kernel's rtnl lock) the kernel sends no neighbour solicitation on the bridge for a forwarded
    packet (it would have no source address for it), so IPv6 pods on it are unreachable from other nodes. Its
    link-local address comes from its MAC; nothing else on the bridge's segment (its pods) makes addresses that
    way from the same MAC. A node without IPv6 has no such key: nothing to do.
    """
    path = "/proc/sys/net/ipv6/conf/%s/accept_dad" % name
    if not os.path.exists(path):
        return
    try:
        with open(path, "w") as handle:
            handle.write("0\n")
    except (IOError, OSError) as exc:
        raise EngineError("cannot turn off duplicate address detection on the new bridge %s (%s): %s"
                          % (name, path, exc))
