# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The uplink move's snapshot and the ``ip`` words it is made of: pure functions, no I/O.

Part of the uplink engine (module_utils/uplink is its entry point and command line): the kernel's state of the
bridge and the uplink as decoded ``ip -N [-d] -json`` data (:func:`snapshot_from_ip`), their addresses and routes
as ``ip addr``/``ip route`` words (:func:`addr_args`, :func:`route_args`), the MAC address rules, and
:func:`render` (the state as text, for ``--diff``). Standard library only, unit-tested without a kernel.
"""

from __future__ import annotations

SNAPSHOT_VERSION = 1
PROTO_KERNEL = "2"
TABLE_MAIN = "254"
TABLE_LOCAL = "255"
FOREVER = 4294967295
ROUTE_TYPES = {"1": "unicast", "2": "local", "3": "broadcast", "4": "anycast", "5": "multicast",
               "6": "blackhole", "7": "unreachable", "8": "prohibit", "9": "throw", "10": "nat"}
ADDR_FLAGS = ("noprefixroute", "nodad", "home", "mngtmpaddr", "autojoin", "optimistic")
ROUTE_METRICS = ("mtu", "advmss", "window", "rtt", "rttvar", "ssthresh", "cwnd", "initcwnd", "initrwnd",
                 "reordering", "hoplimit", "quickack", "fastopen_no_cookie", "congctl", "features", "rto_min")


class UplinkError(Exception):
    """Bad input, an unsupported setup, or a failed step; the message says which."""


def _route_devs(route):
    devs = []
    if route.get("dev"):
        devs.append(route["dev"])
    for hop in route.get("nexthops") or []:
        if isinstance(hop, dict) and hop.get("dev"):
            devs.append(hop["dev"])
    return devs


def snapshot_from_ip(links, addresses, routes4, routes6, bridge, uplink):
    """The part of the kernel's state the move touches, from decoded ``ip -N [-d] -json`` output.

    :param links: ``ip -N -d -json link show``
    :param addresses: ``ip -N -json addr show``
    :param routes4: ``ip -N -d -json -4 route show table all``
    :param routes6: ``ip -N -d -json -6 route show table all``
    :returns: ``{"version", "bridge", "uplink", "links": {name: {...}}, "addresses": {name: [addr_info]},
        "routes": [route with "family"]}`` limited to the bridge and the uplink (routes of the local
        table, which the kernel keeps for the addresses, are left out).
    """
    names = (bridge, uplink)
    snap = {"version": SNAPSHOT_VERSION, "bridge": bridge, "uplink": uplink,
            "links": {}, "addresses": {}, "routes": []}
    index = {}
    for link in links or []:
        index[link.get("ifindex")] = link.get("ifname")
    for link in links or []:
        name = link.get("ifname")
        if name not in names:
            continue
        kind = (link.get("linkinfo") or {}).get("info_kind")
        if link.get("link_type") in ("loopback", "[772]"):
            kind = "loopback"
        snap["links"][name] = {
            "kind": kind,
            "master": link.get("master"),
            "mtu": link.get("mtu"),
            "address": link.get("address"),
            "up": "UP" in (link.get("flags") or []),
        }
    if bridge in snap["links"]:
        snap["links"][bridge]["ports"] = sorted(
            link.get("ifname") for link in links or [] if link.get("master") == bridge)
    for entry in addresses or []:
        name = entry.get("ifname")
        if name not in names:
            continue
        snap["addresses"][name] = [dict(info) for info in entry.get("addr_info", [])
                                   if info.get("family") in ("inet", "inet6")]
    for family, routes in ((4, routes4), (6, routes6)):
        for route in routes or []:
            if str(route.get("table", TABLE_MAIN)) in (TABLE_LOCAL, "local"):
                continue
            if not set(_route_devs(route)) & set(names):
                continue
            entry = dict(route)
            entry["family"] = family
            snap["routes"].append(entry)
    return snap


def _is_global(addr):
    return str(addr.get("scope")) in ("0", "global")


def global_addresses(snap, dev):
    """The global-scope addresses of ``dev`` in ``snap`` (decoded addr_info entries, kernel order)."""
    return [a for a in snap["addresses"].get(dev, []) if _is_global(a)]


def add_order(addrs):
    """The order to add ``addrs`` in so that the kernel lists them as before: IPv4 in listed order
    (primary before its secondaries), IPv6 reversed (the kernel lists the newest first)."""
    return [a for a in addrs if a.get("family") == "inet"] + [a for a in addrs if a.get("family") != "inet"][::-1]


def addr_id(addr):
    """``local/prefixlen`` (plus ``peer`` for point-to-point), the identity of an address."""
    ident = "%s/%s" % (addr["local"], addr["prefixlen"])
    if addr.get("address") and addr.get("address") != addr["local"]:
        ident += " peer %s" % addr["address"]
    return ident


def addr_args(addr, dev, from_dev=None):
    """``ip addr add`` words for ``addr`` on ``dev`` (IPv6: always ``nodad``)."""
    words = ["%s/%s" % (addr["local"], addr["prefixlen"])]
    if addr.get("address") and addr.get("address") != addr["local"]:
        words += ["peer", addr["address"]]
    if addr.get("broadcast"):
        words += ["broadcast", addr["broadcast"]]
    label = addr.get("label")
    if label and from_dev and label.startswith(from_dev + ":"):
        label = dev + label[len(from_dev):]
    if label and label != dev and label != from_dev and label.startswith(dev + ":"):
        words += ["label", label]
    if addr.get("metric") is not None:
        words += ["metric", str(addr["metric"])]
    valid = addr.get("valid_life_time", FOREVER)
    preferred = addr.get("preferred_life_time", FOREVER)
    if valid != FOREVER or preferred != FOREVER:
        words += ["valid_lft", "forever" if valid == FOREVER else str(valid),
                  "preferred_lft", "forever" if preferred == FOREVER else str(preferred)]
    flags = [f for f in ADDR_FLAGS if addr.get(f)]
    if addr.get("family") == "inet6" and "nodad" not in flags:
        flags.append("nodad")
    words += flags
    return words + ["dev", dev]


def _movable(route):
    """Routes the move carries over: not made by the kernel for an address, not in the local table."""
    return str(route.get("protocol", "3")) not in (PROTO_KERNEL, "kernel")


def _unsupported(route):
    for key, what in (("nexthops", "a multipath route"), ("nhid", "a route using a nexthop object"),
                      ("encap", "a route with encapsulation")):
        if route.get(key):
            return what
    return None


def route_args(route):
    """The words that define ``route`` for ``ip route add/del``, without ``dev`` (numeric table/proto/scope)."""
    family = route["family"]
    words = []
    rtype = ROUTE_TYPES.get(str(route.get("type", "1")), str(route.get("type", "unicast")))
    if rtype != "unicast":
        words.append(rtype)
    dst = route.get("dst", "default")
    if dst == "default":
        dst = "0.0.0.0/0" if family == 4 else "::/0"
    words.append(dst)
    if route.get("tos") not in (None, "0", 0, "0x00"):
        words += ["tos", str(route["tos"])]
    via = route.get("via")
    if isinstance(via, dict) and via.get("host"):
        words += ["via", via.get("family", "inet"), via["host"]]
    elif route.get("gateway"):
        words += ["via", route["gateway"]]
    words += ["table", str(route.get("table", TABLE_MAIN))]
    words += ["proto", str(route.get("protocol", "3"))]
    if family == 4:
        words += ["scope", str(route.get("scope", "0"))]
    words += ["metric", str(route.get("metric", 0))]
    if route.get("prefsrc"):
        words += ["src", route["prefsrc"]]
    if "onlink" in (route.get("flags") or []):
        words.append("onlink")
    flow = route.get("flow")
    if isinstance(flow, dict) and (flow.get("to") or flow.get("from")):
        words += ["realms", "%s/%s" % (flow.get("from", "0"), flow.get("to", "0"))
                  if flow.get("from") else str(flow.get("to"))]
    if family == 6 and route.get("pref") and route.get("pref") != "medium":
        words += ["pref", route["pref"]]
    for metrics in route.get("metrics") or []:
        for name in ROUTE_METRICS:
            value = metrics.get(name) if isinstance(metrics, dict) else None
            if value is not None and not isinstance(value, dict):
                words += [name, str(value)]
    return words


def _routes_via(snap, dev):
    """(movable routes through ``dev``, unsupported routes through ``dev``)."""
    movable, bad = [], []
    for route in snap["routes"]:
        if dev not in _route_devs(route) or not _movable(route):
            continue
        if _unsupported(route):
            bad.append(route)
        elif route.get("dev") == dev:
            movable.append(route)
    return movable, bad


def _route_line(verb, route, dev):
    return " ".join(["route", verb] + route_args(route) + ["dev", dev])


def _route_order(route):
    """Device routes first (they make gateways reachable), then routes via a gateway."""
    return 1 if (route.get("gateway") or route.get("via")) else 0


def _describe_route(route):
    return " ".join(route_args(route) + ["dev", str(route.get("dev"))])


ADDR_SET = 3     # addr_assign_type: the address was set by someone (not chosen by the kernel)


def valid_mac(text):
    """True for a unicast Ethernet address the kernel takes (not all zeros, not multicast)."""
    parts = str(text or "").split(":")
    if len(parts) != 6:
        return False
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        return False
    return any(octets) and not octets[0] & 1 and all(0 <= o <= 255 for o in octets)


def restorable_mac(link):
    """The MAC address of ``link`` (a snapshot's) to put back, or ``None``.

    A bridge's address that the kernel chose (random at creation, taken from a port, or all zeros once its last
    port left) is nobody's choice and not put back: the kernel refuses all zeros ("Cannot assign requested
    address"). Put back: an address someone set, or (a snapshot without ``addr_assign_type``) any valid one.
    """
    address = (link or {}).get("address")
    if not valid_mac(address):
        return None
    kind = (link or {}).get("addr_assign_type")
    if kind is not None and kind != ADDR_SET:
        return None
    return address


def check_lines(lines, what):
    """UplinkError, before any change, for a line the kernel would refuse (an invalid MAC address)."""
    for line in lines:
        words = line.split()
        if words[:1] == ["link"] and "address" in words:
            mac = words[words.index("address") + 1]
            if not valid_mac(mac):
                raise UplinkError("%s would run '%s', which the kernel refuses (%s is not a unicast MAC address)"
                                  % (what, line, mac))
    return lines


def dynamic_addresses(snap, dev):
    """The global addresses of ``dev`` with a finite lifetime (given by DHCP or SLAAC, or added with one), as
    ``"ADDR/PREFIX (valid N s)"``."""
    out = []
    for addr in global_addresses(snap, dev):
        valid = addr.get("valid_life_time", FOREVER)
        if valid != FOREVER or addr.get("dynamic"):
            out.append("%s (valid %s s)" % (addr_id(addr), valid))
    return out


def render(snap):
    """Text of the bridge's and the uplink's state, one fact per line (for ``--diff``)."""
    lines = []
    for name in (snap["uplink"], snap["bridge"]):
        link = snap["links"].get(name)
        if link is None:
            lines.append("%s: absent" % name)
            continue
        parts = ["%s: %s" % (name, link.get("kind") or "device"), "mtu %s" % link.get("mtu"),
                 "address %s" % link.get("address"), "up" if link.get("up") else "down"]
        if link.get("master"):
            parts.append("master %s" % link["master"])
        if link.get("ports"):
            parts.append("ports %s" % ",".join(link["ports"]))
        lines.append(" ".join(parts))
        for addr in global_addresses(snap, name):
            lines.append("%s: addr %s" % (name, addr_id(addr)))
        for route in snap["routes"]:
            if route.get("dev") == name and _movable(route):
                lines.append("%s: route %s" % (name, " ".join(route_args(route))))
    return "".join(line + "\n" for line in lines)
