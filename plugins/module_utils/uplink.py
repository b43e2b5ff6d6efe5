# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Move a host's uplink into a Linux bridge in one step, check it, and move it back.

Target side, standard library only, no Ansible import: the module
``podnet.cluster.uplink_bridge``, a node module and a boot-time restore script
all call it the same way.

The move ("l2_bridge" fabric): the bridge is created with the uplink's MTU and
MAC address if it does not exist, the uplink is enslaved, and every global
address of the uplink and every route through it (any table, default route
included, with its metric, protocol, scope, source, table, MTU...) move to the
bridge. All of it is one ``ip -batch``, so the node is without a working
address for microseconds, not for the round trips of separate commands. IPv6
addresses are re-added with ``nodad``: they already passed duplicate address
detection on this segment, and a tentative address would cut IPv6 for a second.

The reverse (:func:`plan_restore`) is computed from the snapshot taken before
the move and the state now, so it also repairs a half-done move (a batch that
stopped at a failing line, a host that lost power). It only removes what the
move put on the bridge: addresses and routes that were the uplink's; it deletes
the bridge only if the move created it and nothing else uses it.

Layers, each usable alone:

* pure functions over decoded ``ip -json`` data: :func:`snapshot_from_ip`,
  :func:`plan_move`, :func:`plan_restore`, :func:`check_targets`,
  :func:`render` (unit-tested without a kernel);
* I/O through a *runner*, any object with ``run(argv, data=None) -> (rc, out, err)``
  (:class:`SubprocessRunner` here, ``AnsibleModule.run_command`` in modules):
  :func:`read_snapshot`, :func:`apply_batch`, :func:`probe`;
* the whole transaction: :func:`move` and :func:`restore`: apply, verify, check
  reachability, optionally wait for a confirmation, and roll back by
  themselves if anything fails.

Limits: multipath routes and routes using nexthop objects or encapsulation
through the uplink are refused (before any change); route metric locks
(``mtu lock``) and route expiry times are not carried over; permanent
neighbour entries stay on the uplink.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time

SNAPSHOT_VERSION = 1
PROTO_KERNEL = "2"
TABLE_MAIN = "254"
TABLE_LOCAL = "255"
FOREVER = 4294967295
# rtm_type numbers (ip -N) -> the words `ip route add` takes
ROUTE_TYPES = {"1": "unicast", "2": "local", "3": "broadcast", "4": "anycast", "5": "multicast",
               "6": "blackhole", "7": "unreachable", "8": "prohibit", "9": "throw", "10": "nat"}
# address flags `ip addr add` can set again
ADDR_FLAGS = ("noprefixroute", "nodad", "home", "mngtmpaddr", "autojoin", "optimistic")
# per-route metrics `ip route add` takes as `NAME VALUE`
ROUTE_METRICS = ("mtu", "advmss", "window", "rtt", "rttvar", "ssthresh", "cwnd", "initcwnd", "initrwnd",
                 "reordering", "hoplimit", "quickack", "fastopen_no_cookie", "congctl", "features", "rto_min")
CHECK_METHODS = ("ping", "neigh")

__all__ = [
    "UplinkError", "SubprocessRunner", "snapshot_from_ip", "read_snapshot", "plan_move", "plan_restore",
    "check_targets", "render", "simulate_move", "apply_batch", "probe", "check_all", "move", "restore",
    "save_snapshot", "load_snapshot", "is_moved", "uplink_for_address", "find_uplink",
]


class UplinkError(Exception):
    """Bad input, an unsupported setup, or a failed step; the message says which."""


# --------------------------------------------------------------------------- #
# running commands
# --------------------------------------------------------------------------- #

class SubprocessRunner:
    """The minimal runner: ``run(argv, data=None) -> (rc, stdout, stderr)`` with text I/O."""

    def __init__(self, env=None):
        self.env = dict(os.environ, LC_ALL="C")
        self.env.update(env or {})

    def run(self, argv, data=None):
        try:
            proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, env=self.env, check=False)
        except OSError as exc:
            return 127, "", "%s: %s" % (argv[0], exc)
        return proc.returncode, proc.stdout, proc.stderr


def _ip_json(runner, args, ip="ip"):
    argv = [ip, "-N", "-json"] + list(args)
    rc, out, err = runner.run(argv)
    if rc != 0:
        raise UplinkError("%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()))
    out = (out or "").strip()
    if not out:
        return []
    try:
        return json.loads(out)
    except ValueError as exc:
        raise UplinkError("cannot parse the JSON output of %s: %s" % (" ".join(argv), exc))


# --------------------------------------------------------------------------- #
# snapshot
# --------------------------------------------------------------------------- #

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


def read_assign_type(name, sys_root="/sys/class/net"):
    """How the kernel says ``name`` got its MAC address (``/sys/class/net/NAME/addr_assign_type``): 0 permanent,
    1 random, 2 stolen from another device, 3 set by someone; ``None`` when it cannot be read."""
    try:
        with open(os.path.join(sys_root, name, "addr_assign_type")) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def read_snapshot(runner, bridge, uplink, ip="ip"):
    """:func:`snapshot_from_ip` of the running kernel (four ``ip -json`` reads), with each link's
    ``addr_assign_type``."""
    snap = snapshot_from_ip(
        _ip_json(runner, ["-d", "link", "show"], ip),
        _ip_json(runner, ["addr", "show"], ip),
        _ip_json(runner, ["-d", "-4", "route", "show", "table", "all"], ip),
        _ip_json(runner, ["-d", "-6", "route", "show", "table", "all"], ip),
        bridge, uplink)
    for name, link in snap["links"].items():
        link["addr_assign_type"] = read_assign_type(name)
    return snap


def find_uplink(runner, address, bridge, saved=None, ip="ip"):
    """:func:`uplink_for_address` on the running kernel."""
    return uplink_for_address(_ip_json(runner, ["addr", "show"], ip), address, bridge, saved)


def save_snapshot(path, snap):
    """Write ``snap`` as JSON to ``path`` with the collection's one atomic writer (fileutil), mode 0644."""
    _atomic_write()(path, json.dumps(snap, indent=1, sort_keys=True) + "\n", mode=0o644, create_dirs=True)


def _atomic_write():
    """fileutil.atomic_write: from the collection, or from the file beside this one (``python3 uplink.py``)."""
    try:
        from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write
    except ImportError:
        import importlib.util
        where = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fileutil.py")
        spec = importlib.util.spec_from_file_location("podnet_fileutil", where)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        atomic_write = module.atomic_write
    return atomic_write


def load_snapshot(path):
    """The snapshot saved at ``path``; ``None`` if there is no such file."""
    try:
        with open(path) as handle:
            snap = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UplinkError("%s: unreadable uplink snapshot (%s)" % (path, exc))
    if not isinstance(snap, dict) or snap.get("version") != SNAPSHOT_VERSION or "links" not in snap:
        raise UplinkError("%s is not an uplink snapshot of version %d" % (path, SNAPSHOT_VERSION))
    return snap


# --------------------------------------------------------------------------- #
# addresses and routes as `ip` arguments
# --------------------------------------------------------------------------- #

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


# --------------------------------------------------------------------------- #
# planning (pure)
# --------------------------------------------------------------------------- #

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
    for what, name in (("bridge", bridge), ("uplink", uplink)):
        if not isinstance(name, str) or not name or len(name) > 15 or any(c in name for c in " /:\t\n") \
                or name in (".", ".."):
            raise UplinkError("%s: %r is not a valid interface name (1 to 15 characters, no blank, '/' or ':')"
                              % (what, name))
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


DHCP_CLIENTS = ("dhclient", "dhcpcd", "udhcpc", "pump", "dhcp6c")


def dhcp_clients(dev, proc="/proc"):
    """DHCP client processes of this network namespace whose command line names ``dev`` (``"PID NAME"``)."""
    try:
        own = os.readlink(os.path.join(proc, "self", "ns", "net"))
    except OSError:
        own = None
    found = []
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        try:
            with open(os.path.join(proc, pid, "cmdline"), "rb") as handle:
                argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
            netns = os.readlink(os.path.join(proc, pid, "ns", "net"))
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) not in DHCP_CLIENTS or (own and netns != own):
            continue
        if any(a == dev or (".%s." % dev) in a or a.endswith("." + dev) for a in argv[1:]):
            found.append("%s %s" % (pid, os.path.basename(argv[0])))
    return found


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


# --------------------------------------------------------------------------- #
# doing it
# --------------------------------------------------------------------------- #

def apply_batch(runner, lines, ip="ip"):
    """Run ``lines`` as one ``ip -batch -``; raise :class:`UplinkError` naming the failing line."""
    if not lines:
        return
    rc, out, err = runner.run([ip, "-batch", "-"], data="\n".join(lines) + "\n")
    if rc != 0:
        raise UplinkError("ip -batch failed (it stops at the first failing line): %s" % (err or out).strip())


def probe(runner, target, bridge, method="ping", timeout=5.0, ip="ip", ping="ping",
          clock=time.monotonic, sleep=time.sleep, backoff=False):
    """Whether ``target`` (``{"address", "family"}``) answers within ``timeout`` seconds.

    ``bridge`` is the interface the answer must come through (the bridge after a move, the uplink
    after a restore). ``ping``: an ICMP echo gets a reply (an IPv6 link-local address is pinged
    through ``bridge``). ``neigh``: the address answers ARP (IPv4) or neighbour
    solicitation (IPv6) on ``bridge``: the cached entry is dropped (unless permanent), one echo
    request triggers the resolution, and the entry must come back with a link-layer address;
    this works where ICMP is filtered. With ``backoff`` the pause between attempts doubles (0.2 s up to
    8 s): the boot-time restore waits long for a gateway that comes up late. Returns ``(ok, detail)``.
    """
    address, family = target["address"], target["family"]
    link_local = family == 6 and ipaddress.ip_address(address).is_link_local
    argv = [ping, "-%d" % family, "-n", "-q", "-c", "1", "-W", "1"]
    if link_local:
        argv += ["-I", bridge]
    argv.append(address)
    deadline = clock() + max(float(timeout), 0.0)
    attempts = 0
    last = ""
    pause = 0.2
    while True:
        attempts += 1
        if method == "neigh":
            state = _neigh_state(runner, address, bridge, ip)
            if state is None or "PERMANENT" not in state and "NOARP" not in state:
                runner.run([ip, "neigh", "del", address, "dev", bridge])
            rc, out, err = runner.run(argv)
            poll_until = min(deadline, clock() + 1.5)
            while True:
                state = _neigh_state(runner, address, bridge, ip)
                if state and state.get("lladdr") and not {"FAILED", "INCOMPLETE"} & set(state.get("state", [])):
                    return True, "%s is at %s on %s (%s, attempt %d)" % (
                        address, state["lladdr"], bridge, "/".join(state.get("state", [])), attempts)
                if clock() >= poll_until:
                    break
                sleep(0.05)
            last = "no link-layer answer from %s on %s" % (address, bridge)
        else:
            rc, out, err = runner.run(argv)
            if rc == 0:
                return True, "%s answered ping (attempt %d)" % (address, attempts)
            last = (err or out or "").strip().splitlines()[-1:] or ["ping rc=%d" % rc]
            last = "%s did not answer ping: %s" % (address, last[0])
        if clock() >= deadline:
            return False, "%s; %d attempt(s) in %.1f s" % (last, attempts, float(timeout))
        sleep(min(pause, max(deadline - clock(), 0.0)))
        if backoff:
            pause = min(pause * 2, 8.0)


def _neigh_state(runner, address, bridge, ip):
    rc, out, _err = runner.run([ip, "-json", "neigh", "show", "to", address, "dev", bridge])
    if rc != 0 or not (out or "").strip():
        return None
    try:
        entries = json.loads(out)
    except ValueError:
        return None
    return entries[0] if entries else None


def check_all(runner, targets, bridge, method="ping", timeout=5.0, **kw):
    """Probe every target (they share one deadline); ``(all ok, [{"address", "ok", "detail"}])``."""
    if method not in CHECK_METHODS:
        raise UplinkError("check method %r is not one of %s" % (method, ", ".join(CHECK_METHODS)))
    clock = kw.get("clock", time.monotonic)
    deadline = clock() + float(timeout)
    results = []
    for target in targets:
        ok, detail = probe(runner, target, bridge, method, max(deadline - clock(), 0.0), **kw)
        results.append({"address": target["address"], "ok": ok, "detail": detail, "method": method})
    return all(r["ok"] for r in results), results


def _transaction(runner, before, lines, done, revert, reverted, targets, via, method, check_timeout, confirm, ip,
                 backoff=False):
    """Apply ``lines``; verify ``done(after) == []``; probe ``targets`` through ``via``; ``confirm()``;
    on any failure apply ``revert(now)`` and verify ``reverted(final) == []``."""
    outcome = {"changed": True, "commands": list(lines), "checked": [], "rolled_back": False,
               "rollback_commands": [], "error": None}
    try:
        apply_batch(runner, lines, ip)
        after = read_snapshot(runner, before["bridge"], before["uplink"], ip)
        left = done(after)
        if left:
            raise UplinkError("the batch ran but these steps are still to do: %s" % "; ".join(left))
        if targets:
            ok, outcome["checked"] = check_all(runner, targets, via, method, check_timeout, ip=ip, backoff=backoff)
            if not ok:
                raise UplinkError("reachability check failed: %s"
                                  % "; ".join(r["detail"] for r in outcome["checked"] if not r["ok"]))
        if confirm is not None:
            ok, why = confirm()
            if not ok:
                raise UplinkError(why)
        outcome["after"] = after
        return outcome
    except UplinkError as exc:
        outcome["error"] = str(exc)
    except Exception as exc:  # a bug must not leave the host half-moved either
        outcome["error"] = "unexpected %s: %s" % (type(exc).__name__, exc)
    # roll back
    outcome["rolled_back"] = True
    try:
        now = read_snapshot(runner, before["bridge"], before["uplink"], ip)
        back = revert(now)
        outcome["rollback_commands"] = back
        apply_batch(runner, back, ip)
        final = read_snapshot(runner, before["bridge"], before["uplink"], ip)
        outcome["after"] = final
        left = reverted(final)
        if left:
            outcome["error"] += "; the rollback left these steps undone: %s" % "; ".join(left)
            outcome["rollback_complete"] = False
        else:
            outcome["rollback_complete"] = True
    except UplinkError as exc:
        outcome["error"] += "; the rollback failed too: %s" % exc
        outcome["rollback_complete"] = False
    return outcome


def move(runner, bridge, uplink, check_addresses=None, method="ping", check_timeout=5.0, confirm=None,
         before=None, ip="ip", backoff=False):
    """Move ``uplink`` into ``bridge``, check, confirm, or roll back to the state before.

    :param runner: object with ``run(argv, data=None) -> (rc, out, err)``.
    :param check_addresses: addresses that must answer after the move; default the default
        gateway(s) through the uplink (no probe at all if there are none).
    :param method: ``ping`` or ``neigh`` (ARP/NDP), see :func:`probe`.
    :param confirm: ``None``, or a callable run after a successful check that returns
        ``(confirmed, why_not)``; a refusal rolls back (the controller's confirmation).
    :param before: the snapshot to start from (read now if ``None``).
    :param backoff: the check's attempts are spaced further and further apart (see :func:`probe`).
    :returns: dict ``changed, commands, checked, rolled_back, rollback_commands, error,
        rollback_complete (after a rollback), before, after``; ``error`` is ``None`` on success.
    """
    before = before or read_snapshot(runner, bridge, uplink, ip)
    lines = plan_move(before)
    if not lines:
        return {"changed": False, "commands": [], "checked": [], "rolled_back": False, "rollback_commands": [],
                "error": None, "before": before, "after": before}
    targets = check_targets(before, check_addresses)
    outcome = _transaction(runner, before, lines, plan_move, lambda now: plan_restore(before, now),
                           lambda now: plan_restore(before, now), targets, bridge, method, check_timeout, confirm, ip,
                           backoff)
    outcome["before"] = before
    return outcome


def restore(runner, saved, check_addresses=None, method="ping", check_timeout=5.0, confirm=None, ip="ip"):
    """Bring the uplink back to ``saved`` (the snapshot from before the move); check, confirm, or move
    it into the bridge again. Same result as :func:`move`."""
    before = read_snapshot(runner, saved["bridge"], saved["uplink"], ip)
    lines = plan_restore(saved, before)
    if not lines:
        return {"changed": False, "commands": [], "checked": [], "rolled_back": False, "rollback_commands": [],
                "error": None, "before": before, "after": before}
    targets = check_targets(saved, check_addresses)
    outcome = _transaction(runner, before, lines, lambda now: plan_restore(saved, now),
                           plan_move, plan_move, targets, saved["uplink"], method, check_timeout, confirm, ip)
    outcome["before"] = before
    return outcome


# --------------------------------------------------------------------------- #
# command line (boot-time restore, by hand): python3 uplink.py move|restore|plan ...
# --------------------------------------------------------------------------- #

def main(argv=None, runner=None, out=None):
    """``uplink.py {plan,move,restore} --bridge B --uplink U [--snapshot PATH] [--check-address A ...]
    [--check-method ping|neigh] [--check-timeout S]``: the engine without Ansible, printing one JSON
    document. ``move`` saves the snapshot first (when the uplink is not yet a port of the bridge),
    ``restore`` reads it and removes it when done. Exit status 0 done (or nothing to do), 1 rolled
    back, 2 bad input or refused before any change."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="uplink.py", description="Move an uplink into a bridge and back "
                                     "(podnet.cluster), in one ip -batch, checked, rolled back on failure.")
    parser.add_argument("action", choices=["plan", "move", "restore"])
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--uplink", required=True)
    parser.add_argument("--snapshot", help="default /etc/podnet/uplink-<bridge>.json")
    parser.add_argument("--check-address", action="append", default=[])
    parser.add_argument("--check-method", choices=CHECK_METHODS, default="ping")
    parser.add_argument("--check-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    runner = runner or SubprocessRunner()
    out = out or sys.stdout
    path = args.snapshot or "/etc/podnet/uplink-%s.json" % args.bridge
    report = {"action": args.action, "bridge": args.bridge, "uplink": args.uplink, "snapshot": path}
    status = 0
    try:
        current = read_snapshot(runner, args.bridge, args.uplink)
        if args.action == "plan":
            report["commands"] = plan_move(current)
        elif args.action == "move":
            if plan_move(current) and (current["links"].get(args.uplink) or {}).get("master") != args.bridge:
                save_snapshot(path, current)
            result = move(runner, args.bridge, args.uplink, args.check_address, args.check_method,
                          args.check_timeout, before=current)
            report.update((k, result.get(k)) for k in ("changed", "commands", "checked", "rolled_back",
                                                       "rollback_commands", "rollback_complete", "error"))
            status = 1 if result["error"] else 0
        else:
            saved = load_snapshot(path)
            if saved is None:
                raise UplinkError("no snapshot at %s" % path)
            result = restore(runner, saved, args.check_address, args.check_method, args.check_timeout)
            report.update((k, result.get(k)) for k in ("changed", "commands", "checked", "rolled_back",
                                                       "rollback_commands", "rollback_complete", "error"))
            if result["error"]:
                status = 1
            else:
                os.unlink(path)
    except (UplinkError, OSError) as exc:
        report["error"] = str(exc)
        status = 2
    out.write(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
