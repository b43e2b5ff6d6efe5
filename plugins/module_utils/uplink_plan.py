# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The uplink move's plans: pure functions from snapshots to ``ip -batch`` lines, no I/O.

Part of the uplink engine (module_utils/uplink is its entry point and command line): which interface is the
uplink (:func:`uplink_for_address`), the lines of the move (:func:`plan_move`) and of its reverse
(:func:`plan_restore`, which also repairs a half-done move), the state a move leads to (:func:`simulate_move`, for
``--diff``) and the addresses to probe after it (:func:`check_targets`). Standard library only, unit-tested without
a kernel.
"""

from __future__ import annotations

import ipaddress
import json

from ansible_collections.podnet.cluster.plugins.module_utils.ifname import ifname_problem
from ansible_collections.podnet.cluster.plugins.module_utils.uplink_state import (
    TABLE_MAIN,
    UplinkError,
    _describe_route,
    _is_global,
    _movable,
    _route_line,
    _route_order,
    _routes_via,
    _unsupported,
    add_order,
    addr_args,
    addr_id,
    check_lines,
    global_addresses,
    restorable_mac,
    route_args,
    valid_mac,
)


def uplink_for_address(addresses, address, bridge, saved=None):
    """The uplink of a node given its underlay address (``podnet_uplink`` defaults to it).

    ``addresses`` is decoded ``ip -json addr show``. The uplink is the interface that holds
    ``address``; when the bridge holds it (the move is done), it is the uplink of the saved
    snapshot ``saved``, else the bridge's one port. Raises :class:`UplinkError` when that is
    not decidable.
    """
    try:
        wanted = ipaddress.ip_address(str(address).split("/", maxsplit=1)[0].strip())
    except ValueError:
        raise UplinkError("uplink address %r is not an IP address" % (address,))
    holders = []
    for entry in addresses or []:
        for info in entry.get("addr_info", []):
            try:
                if ipaddress.ip_address(info.get("local", "")) == wanted:
                    holders.append(entry.get("ifname"))
            except ValueError:
                continue
    holders = sorted(set(holders))
    if not holders:
        raise UplinkError("no interface of this host holds %s, the address that names the uplink" % wanted)
    others = [h for h in holders if h != bridge]
    if len(others) > 1:
        raise UplinkError("%s is on %s; name the uplink explicitly" % (wanted, " and ".join(others)))
    if others:  # not moved yet, or half-moved (the address is on both)
        return others[0]
    if saved and saved.get("bridge") == bridge and saved.get("uplink"):
        return saved["uplink"]
    ports = [e.get("ifname") for e in addresses or [] if e.get("master") == bridge]
    if len(ports) == 1:
        return ports[0]
    raise UplinkError("%s is on bridge %s already, which has %s and no snapshot names its uplink; name the "
                      "uplink explicitly" % (wanted, bridge, "ports %s" % ", ".join(ports) if ports else "no port"))


def _check_names(bridge, uplink):
    """UplinkError unless both names pass the collection's one interface-name rule (ifname) and differ."""
    for what, name in (("bridge", bridge), ("uplink", uplink)):
        problem = ifname_problem(name)
        if problem:
            raise UplinkError("%s: %r is not a valid interface name: it %s" % (what, name, problem))
    if bridge == uplink:
        raise UplinkError("bridge and uplink are both %r; the uplink must be a different interface" % bridge)


def plan_move(snap):
    """``ip -batch`` lines that move the uplink into the bridge; ``[]`` when it is already moved.

    Raises :class:`UplinkError` (before any change) when the uplink is missing, is a bridge or a
    port of another bridge, when the bridge name belongs to something that is not a bridge, or
    when a route through the uplink cannot be carried over.
    """
    bridge, uplink = snap["bridge"], snap["uplink"]
    _check_names(bridge, uplink)
    links = snap["links"]
    up = links.get(uplink)
    if up is None:
        raise UplinkError("uplink %s does not exist on this host" % uplink)
    if up.get("kind") in ("bridge", "loopback"):
        raise UplinkError("uplink %s is a %s; it cannot be enslaved into bridge %s" % (uplink, up["kind"], bridge))
    if up.get("master") not in (None, bridge):
        raise UplinkError("uplink %s is already a port of %s; refusing to move it into %s"
                          % (uplink, up["master"], bridge))
    br = links.get(bridge)
    if br is not None and br.get("kind") != "bridge":
        raise UplinkError("%s exists and is a %s, not a bridge" % (bridge, br.get("kind") or "plain device"))
    routes, bad = _routes_via(snap, uplink)
    if bad:
        raise UplinkError("route(s) through uplink %s that cannot be moved: %s; move or remove them first"
                          % (uplink, "; ".join("%s is %s" % (_describe_route(r), _unsupported(r)) for r in bad)))
    lines = []
    if br is None:
        lines.append("link add name %s address %s mtu %s type bridge" % (bridge, up["address"], up["mtu"]))
    else:
        change = []
        if up.get("address") and br.get("address") != up["address"]:
            change += ["address", up["address"]]
        if br.get("mtu") != up.get("mtu"):
            change += ["mtu", str(up["mtu"])]
        if change:
            lines.append(" ".join(["link", "set", "dev", bridge] + change))
    if up.get("master") != bridge:
        lines.append("link set dev %s master %s" % (uplink, bridge))
    if br is None or not br.get("up"):
        lines.append("link set dev %s up" % bridge)
    on_bridge = {addr_id(a) for a in global_addresses(snap, bridge)}
    moving = global_addresses(snap, uplink)
    for addr in add_order(moving):
        if addr_id(addr) not in on_bridge:
            lines.append(" ".join(["addr", "add"] + addr_args(addr, bridge, uplink)))
    bridge_routes = {tuple(route_args(r)) for r in _routes_via(snap, bridge)[0]}
    for route in sorted(routes, key=_route_order, reverse=True):
        lines.append(_route_line("del", route, uplink))
    for route in sorted(routes, key=_route_order):
        if tuple(route_args(route)) not in bridge_routes:
            lines.append(_route_line("add", route, bridge))
    # IPv4 secondaries first: deleting a primary deletes its secondaries too.
    for addr in sorted(moving, key=lambda a: 0 if a.get("secondary") else 1):
        lines.append("addr del %s dev %s" % (addr_id(addr), uplink))
    return check_lines(lines, "moving %s into %s" % (uplink, bridge))


def is_moved(snap):
    """True when the uplink is a port of the bridge and nothing is left to move."""
    return not plan_move(snap)


def plan_restore(before, current):
    """``ip -batch`` lines that bring the uplink and the bridge back to ``before``; ``[]`` when they are.

    ``before`` is the snapshot taken before the move (:func:`read_snapshot`), ``current`` the state
    now. Only what the move carries is put back or taken away: the uplink's master and up state,
    its global addresses and routes; addresses and routes on the bridge that were the uplink's
    (and not the bridge's) are removed; the bridge is deleted only if the move created it and
    it then has no other port, address or route; an existing bridge gets its MTU and up state back, and its
    MAC address when the kernel takes it (:func:`valid_mac`: the move set the uplink's address on it, so
    whoever had chosen the old one, putting it back is the state before; all zeros, as a bridge shows once
    its last port left, is left alone); a bridge made again gets an address only when someone had set it
    (:func:`restorable_mac`).
    """
    bridge, uplink = before["bridge"], before["uplink"]
    _check_names(bridge, uplink)
    if (current["bridge"], current["uplink"]) != (bridge, uplink):
        raise UplinkError("snapshots of different interfaces: %s/%s and %s/%s"
                          % (bridge, uplink, current["bridge"], current["uplink"]))
    bu = before["links"].get(uplink)
    if bu is None:
        raise UplinkError("the snapshot has no uplink %s; nothing to restore from" % uplink)
    cu = current["links"].get(uplink)
    if cu is None:
        raise UplinkError("uplink %s does not exist on this host any more; cannot move its addresses back" % uplink)
    bb = before["links"].get(bridge)
    cb = current["links"].get(bridge)
    if cb is not None and cb.get("kind") != "bridge":
        raise UplinkError("%s is a %s now, not a bridge; refusing to touch it" % (bridge, cb.get("kind")))
    lines = []
    mac = restorable_mac(bb)
    if bb is not None and cb is None:
        lines.append("link add name %s%s mtu %s type bridge" % (bridge, " address %s" % mac if mac else "",
                                                                bb["mtu"]))
    if cu.get("master") != bu.get("master"):
        lines.append("link set dev %s nomaster" % uplink if bu.get("master") is None
                     else "link set dev %s master %s" % (uplink, bu["master"]))
    if bu.get("up") and not cu.get("up"):
        lines.append("link set dev %s up" % uplink)

    # addresses
    want_u = global_addresses(before, uplink)
    want_b = global_addresses(before, bridge) if bb is not None else []
    have_u = {addr_id(a) for a in global_addresses(current, uplink)}
    have_b = {addr_id(a) for a in global_addresses(current, bridge)} if cb is not None else set()
    for addr in add_order(want_u):
        if addr_id(addr) not in have_u:
            lines.append(" ".join(["addr", "add"] + addr_args(addr, uplink, bridge)))
    for addr in add_order(want_b):
        if addr_id(addr) not in have_b:
            lines.append(" ".join(["addr", "add"] + addr_args(addr, bridge)))
    moved_ids = {addr_id(a) for a in want_u} - {addr_id(a) for a in want_b}
    drop_b = [a for a in global_addresses(current, bridge) if addr_id(a) in moved_ids] if cb is not None else []

    # routes
    want_ru = _routes_via(before, uplink)[0]
    want_rb = _routes_via(before, bridge)[0] if bb is not None else []
    have_ru = {tuple(route_args(r)) for r in _routes_via(current, uplink)[0]}
    cur_rb = _routes_via(current, bridge)[0] if cb is not None else []
    have_rb = {tuple(route_args(r)) for r in cur_rb}
    moved_routes = {tuple(route_args(r)) for r in want_ru} - {tuple(route_args(r)) for r in want_rb}
    drop_rb = [r for r in cur_rb if tuple(route_args(r)) in moved_routes]
    for route in sorted(drop_rb, key=_route_order, reverse=True):
        lines.append(_route_line("del", route, bridge))
    adds = [(r, uplink) for r in want_ru if tuple(route_args(r)) not in have_ru]
    adds += [(r, bridge) for r in want_rb if tuple(route_args(r)) not in have_rb]
    for route, dev in sorted(adds, key=lambda item: _route_order(item[0])):
        lines.append(_route_line("add", route, dev))
    for addr in sorted(drop_b, key=lambda a: 0 if a.get("secondary") else 1):
        lines.append("addr del %s dev %s" % (addr_id(addr), bridge))

    # the bridge itself
    if bb is None and cb is not None:
        others = [p for p in cb.get("ports", []) if p != uplink]
        kept_addrs = [a for a in global_addresses(current, bridge) if addr_id(a) not in moved_ids]
        kept_routes = [r for r in cur_rb if tuple(route_args(r)) not in moved_routes]
        if not others and not kept_addrs and not kept_routes:
            lines.append("link del dev %s" % bridge)
    elif bb is not None and cb is not None:
        change = []
        old_mac = bb.get("address") if valid_mac(bb.get("address")) else None
        if old_mac and cb.get("address") != old_mac:
            change += ["address", old_mac]
        if bb.get("mtu") and cb.get("mtu") != bb["mtu"]:
            change += ["mtu", str(bb["mtu"])]
        if change:
            lines.append(" ".join(["link", "set", "dev", bridge] + change))
        if bb.get("up") != cb.get("up"):
            lines.append("link set dev %s %s" % (bridge, "up" if bb.get("up") else "down"))
    elif bb is not None and bb.get("up"):
        lines.append("link set dev %s up" % bridge)  # created above
    return check_lines(lines, "putting %s back" % uplink)


def bridge_kept(before, current):
    """Why a bridge made by the move is not deleted by :func:`plan_restore` (``None`` if it would be)."""
    bridge, uplink = before["bridge"], before["uplink"]
    cb = current["links"].get(bridge)
    if before["links"].get(bridge) is not None or cb is None:
        return None
    moved_ids = {addr_id(a) for a in global_addresses(before, uplink)}
    moved_routes = {tuple(route_args(r)) for r in _routes_via(before, uplink)[0]}
    why = []
    others = [p for p in cb.get("ports", []) if p != uplink]
    if others:
        why.append("ports %s" % ", ".join(others))
    addrs = [addr_id(a) for a in global_addresses(current, bridge) if addr_id(a) not in moved_ids]
    if addrs:
        why.append("addresses %s" % ", ".join(addrs))
    routes = [_describe_route(r) for r in _routes_via(current, bridge)[0] if tuple(route_args(r)) not in moved_routes]
    if routes:
        why.append("routes %s" % "; ".join(routes))
    return "bridge %s still has %s" % (bridge, " and ".join(why)) if why else None


def simulate_move(snap):
    """The snapshot :func:`plan_move` leads to (for ``--diff`` and check mode)."""
    bridge, uplink = snap["bridge"], snap["uplink"]
    out = json.loads(json.dumps(snap))
    up = out["links"][uplink]
    br = out["links"].setdefault(bridge, {"kind": "bridge", "master": None, "ports": []})
    br.update(mtu=up["mtu"], address=up["address"], up=True)
    if uplink not in br.setdefault("ports", []):
        br["ports"] = sorted(br["ports"] + [uplink])
    up["master"] = bridge
    on_bridge = {addr_id(a) for a in global_addresses(out, bridge)}
    moving = global_addresses(out, uplink)
    out["addresses"][uplink] = [a for a in out["addresses"].get(uplink, []) if not _is_global(a)]
    new4, new6 = [], []
    for addr in moving:  # as listed: IPv4 appended after the bridge's own, IPv6 listed newest first
        if addr_id(addr) not in on_bridge:
            new = dict(addr)
            if new.get("label", "").startswith(uplink):
                new["label"] = bridge + new["label"][len(uplink):]
            if new.get("family") == "inet6":
                new["nodad"] = True
                new.pop("tentative", None)
                new6.append(new)
            else:
                new4.append(new)
    own = out["addresses"].get(bridge, [])
    out["addresses"][bridge] = ([a for a in own if a.get("family") == "inet"] + new4 + new6
                                + [a for a in own if a.get("family") != "inet"])
    routes = []
    seen = set()
    for route in out["routes"]:
        if route.get("dev") == uplink and _movable(route) and not _unsupported(route):
            route = dict(route, dev=bridge)
        key = (route.get("dev"), tuple(route_args(route)))
        if key in seen:
            continue
        seen.add(key)
        routes.append(route)
    out["routes"] = routes
    return out


def check_targets(snap, addresses=None):
    """Addresses to probe after the move: ``addresses`` if given, else the gateway of every default
    route (main table) through the uplink, IPv4 first. Each is ``{"address", "family"}``."""
    out = []
    seen = set()
    if addresses:
        for raw in addresses:
            try:
                ip = ipaddress.ip_address(str(raw).split("%", maxsplit=1)[0].strip())
            except ValueError:
                raise UplinkError("check address %r is not an IP address" % (raw,))
            if str(ip) not in seen:
                seen.add(str(ip))
                out.append({"address": str(ip), "family": ip.version})
        return out
    routes, _bad = _routes_via(snap, snap["uplink"])
    for family in (4, 6):
        for route in routes:
            if route["family"] != family or route.get("dst", "default") not in ("default", "0.0.0.0/0", "::/0"):
                continue
            if str(route.get("table", TABLE_MAIN)) != TABLE_MAIN:
                continue
            gateway = route.get("gateway") or (route.get("via") or {}).get("host")
            if gateway and gateway not in seen:
                seen.add(gateway)
                out.append({"address": gateway, "family": ipaddress.ip_address(gateway).version})
    return out
