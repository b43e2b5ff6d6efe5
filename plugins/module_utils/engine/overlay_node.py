# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""What the overlay engine (engine/overlay.py, fabric vxlan) reads of the node and what it refuses there.

One round of reads (``read_state``): the VXLAN links and every address as ``ip -json``, and the three large
tables - both families' main tables, each device's permanent neighbours and FDB entries - as iproute2's text,
which is cheaper to read than its JSON for thousands of entries and is printed by the same code (the same
canonical addresses, lowercase MACs). Then the MTU of the devices, and the refusals before any change: a link of
a device's name that is not a VXLAN device, another VXLAN device on the overlay's UDP port and underlay family.
Standard library only (Python 3.8+).
"""

from __future__ import annotations

import json

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, run_reads
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    find_link_with_address,
    get_link,
    ip_bin,
    link_kind,
    run_ip_json,
)
from ansible_collections.podnet.cluster.plugins.module_utils.text import limit as text_limit

# Bytes VXLAN adds to every inner frame: outer IP (20 / 40) + UDP (8) + VXLAN (8) + inner Ethernet (14).
OVERHEAD = {4: 50, 6: 70}
TX_CSUM_FEATURE = "tx-checksum-ip-generic"
MAX_LISTED = 10
# Address families iproute2 prints after ``via`` for a next hop of another family (RTA_VIA: ``via inet6 fe80::1``)
_VIA_FAMILIES = frozenset(("inet", "inet6", "link", "mpls", "bridge", "packet", "ipx", "dnet", "unspec"))


def limit(items):
    """At most MAX_LISTED of ``items`` joined with "; ", and how many more there are."""
    return text_limit(items, MAX_LISTED)


def _decode(argv, result, tolerate=False):
    rc, out, err = result
    if rc != 0:
        if tolerate:
            return []
        raise EngineError("command failed: %s: %s" % (" ".join(argv), (err or out).strip()), rc=rc)
    try:
        return json.loads(out) if out.strip() else []
    except ValueError as exc:
        raise EngineError("cannot parse the JSON output of %s: %s" % (" ".join(argv), exc))


def _text(argv, result, tolerate=False):
    """The output of a text read; "" for a failing one with ``tolerate``."""
    rc, out, err = result
    if rc != 0:
        if tolerate:
            return ""
        raise EngineError("command failed: %s: %s" % (" ".join(argv), (err or out).strip()), rc=rc)
    return out


def parse_routes(text, family):
    """[(dst, dev, protocol, gateway)] of ``ip -N -4|-6 route show`` text: ``dst`` with its prefix length (iproute2
    prints host routes without one) or ``default``, ``dev`` and ``gateway`` "" when absent (a multipath route, a
    next hop of another family), ``protocol`` an int (a name if not numeric; None when not printed: ``boot``).

    A route's line starts with its type when that is not unicast (a number with ``-N``); its next hops follow on
    lines of their own, indented, which are not routes."""
    host = "/32" if family == 4 else "/128"
    out = []
    for line in text.splitlines():
        f = line.split()
        if not f or line[0] in " \t":
            continue
        dst = f[0]
        if dst != "default" and "." not in dst and ":" not in dst and len(f) > 1:
            dst = f[1]      # the route's type first
        if "/" not in dst and dst != "default":
            dst += host
        dev = gateway = ""
        proto = None
        if "dev" in f:
            i = f.index("dev")
            if i + 1 < len(f):
                dev = f[i + 1]
        if "via" in f:
            i = f.index("via")
            if i + 1 < len(f) and f[i + 1] not in _VIA_FAMILIES:
                gateway = f[i + 1]
        if "proto" in f:
            i = f.index("proto")
            if i + 1 < len(f):
                proto = f[i + 1]
                try:
                    proto = int(proto)
                except ValueError:
                    pass
        out.append((dst, dev, proto, gateway))
    return out


def parse_neigh(text, name):
    """{(name, address): lowercase MAC} of ``ip neigh show dev NAME`` text (entries without a MAC left out)."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) > 2 and f[1] == "lladdr":
            out[(name, f[0])] = f[2].lower()
        elif "lladdr" in f[1:-1]:
            out[(name, f[0])] = f[f.index("lladdr", 1) + 1].lower()
    return out


def parse_fdb(text, name):
    """{(name, lowercase MAC): destination} of the permanent entries with a destination in ``bridge fdb show dev
    NAME`` text; a MAC with more than one destination has them joined by "," (replaced by the engine)."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 3 or f[-1] != "permanent" or "dst" not in f:
            continue
        i = f.index("dst")
        if i + 1 >= len(f) or i == 0:
            continue
        key = (name, f[0].lower())
        if key in out:
            out[key] = out[key] + "," + f[i + 1]
        else:
            out[key] = f[i + 1]
    return out


def read_state(runner, names):
    """What the overlay reads of the node, in one round of commands run side by side (engine.runner.run_reads):
    the VXLAN links, every address, both families' main tables and, per name in ``names``, its permanent
    neighbours and FDB entries. A dict: ``vxlan`` (``ip -d -json link show type vxlan``), ``addr``, ``main``
    ({family: parse_routes}), ``neigh`` and ``fdb`` ({name: parse_neigh / parse_fdb}; empty for a device that
    does not exist)."""
    ip, bridge = ip_bin(runner), runner.which("bridge")
    argvs = [[ip, "-d", "-json", "link", "show", "type", "vxlan"], [ip, "-json", "addr", "show"],
             [ip, "-N", "-4", "route", "show", "table", "main"],
             [ip, "-N", "-6", "route", "show", "table", "main"]]
    for name in names:
        argvs.append([ip, "neigh", "show", "dev", name, "nud", "permanent"])
        argvs.append([bridge, "fdb", "show", "dev", name])
    results = run_reads(runner, argvs)
    state = dict(vxlan=_decode(argvs[0], results[0], tolerate=True), addr=_decode(argvs[1], results[1]),
                 main={4: parse_routes(_text(argvs[2], results[2], tolerate=True), 4),
                       6: parse_routes(_text(argvs[3], results[3], tolerate=True), 6)},
                 neigh={}, fdb={})
    present = {link.get("ifname") for link in state["vxlan"]}
    for index, name in enumerate(names):
        neigh_at, fdb_at = 4 + 2 * index, 5 + 2 * index
        # a device that does not exist (yet) has no entries; another kind of link of that name is read by get_link
        exists = name in present
        state["neigh"][name] = parse_neigh(_text(argvs[neigh_at], results[neigh_at], tolerate=not exists), name)
        state["fdb"][name] = parse_fdb(_text(argvs[fdb_at], results[fdb_at], tolerate=not exists), name)
    return state


def read_device(runner, name, protocol, state=None):
    """(link or None, addresses, {(dev, vtep): mac}, {(dev, mac): dst}, {(dev, block): via}) of one device.

    ``state``: read_state's answer holding ``name`` (read here when None).
    """
    if state is None or name not in state["neigh"]:
        state = read_state(runner, [name])
    link = next((l for l in state["vxlan"] if l.get("ifname") == name), None)
    if link is None:
        link = get_link(runner, name)       # not a VXLAN device, or none at all
    if link is None:
        return None, [], {}, {}, {}
    addrs = []
    for entry in state["addr"]:
        if entry.get("ifname") != name:
            continue
        for info in entry.get("addr_info") or []:
            if info.get("family") in ("inet", "inet6") and info.get("scope") != "link":
                addrs.append("%s/%s" % (info["local"], info["prefixlen"]))
    routes = {}
    for fam in (4, 6):
        for dst, dev, proto, gateway in state["main"].get(fam) or []:
            if dev == name and proto == protocol:
                routes[(name, dst)] = gateway
    return link, addrs, dict(state["neigh"][name]), dict(state["fdb"][name]), routes


def overlay_mtu(runner, spec, addr_data=None):
    """{device name: MTU}: the MTU of the link holding the device's ``local`` address minus the VXLAN overhead."""
    if addr_data is None:
        addr_data = run_ip_json(runner, ["addr", "show"], numeric=False)
    names = {d["name"] for d in spec.get("devices") or []}
    out = {}
    for dev in spec.get("devices") or []:
        holder = find_link_with_address([a for a in addr_data if a.get("ifname") not in names], dev["local"])
        if holder is None:
            raise EngineError("overlay device %s: no link on this node holds its local address %s (the node IP); "
                              "check podnet_node_ip" % (dev["name"], dev["local"]))
        mtu = int(holder["mtu"]) - OVERHEAD[int(dev["family"])]
        if mtu < 1280 and any(":" in a for a in dev.get("addresses") or []):
            raise EngineError("overlay device %s: %s's MTU %d minus the VXLAN overhead %d is %d, below IPv6's minimum "
                              "1280" % (dev["name"], holder["ifname"], holder["mtu"], OVERHEAD[int(dev["family"])], mtu))
        out[dev["name"]] = mtu
    return out


def bridge_mtu(runner, spec):
    """The pod bridge's MTU under the overlay: the smallest of the devices' MTUs (None without devices)."""
    mtus = overlay_mtu(runner, spec)
    return min(mtus.values()) if mtus else None


def ethtool_features(runner, name):
    """{feature: on/off...} of ``ethtool -k NAME``."""
    path = runner.which("ethtool")
    rc, out, err = runner.run([path, "-k", name])
    if rc != 0:
        raise EngineError("ethtool -k %s failed: %s" % (name, (err or out).strip()))
    features = {}
    for line in out.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            features[key.strip()] = value.strip().split()[0] if value.strip() else ""
    return features


def refuse_other_kind(node, link):
    """EngineError when ``link`` (one of the overlay's device names) is not a VXLAN device: it is somebody else's
    link, and podnet.cluster never deletes or re-creates it."""
    kind = link_kind(link)
    if kind == "vxlan":
        return
    name = link.get("ifname")
    raise EngineError("node %s: the link %s is a %s device, not a VXLAN device: it is not podnet.cluster's, and "
                      "podnet.cluster neither deletes nor re-creates it. Nothing was changed: rename or remove that "
                      "link (the overlay's devices are named podnet.vx4 and podnet.vx6)"
                      % (node, name, kind or "plain"), device=name, kind=kind or "plain")


def device_problems(link, dev, port, vni):
    """Why the existing VXLAN device cannot be kept as the device (it is re-created), or []."""
    data = (link.get("linkinfo") or {}).get("info_data") or {}
    out = []
    if data.get("id") != vni:
        out.append("VNI %s, not %s" % (data.get("id"), vni))
    local = data.get("local") or data.get("local6")
    if local != dev["local"]:
        out.append("local %s, not %s" % (local, dev["local"]))
    if data.get("port") != port:
        out.append("port %s, not %s" % (data.get("port"), port))
    if data.get("learning"):
        out.append("learning on")
    if data.get("link"):
        out.append("bound to %s" % data["link"])
    return out


def vxlan_families(data):
    """The underlay families a VXLAN device's socket takes (``info_data`` of ``ip -d -json link``).

    The kernel opens an IPv6 socket for a device with an IPv6 local, group or remote address, an IPv4 one
    otherwise, and both for a device of ``external`` (flow-based) mode.
    """
    if data.get("external"):
        return {4, 6}
    if any(data.get(key) for key in ("local6", "group6", "remote6")):
        return {6}
    return {4}


def foreign_vxlan(links, ours, port, families):
    """[(device, VNI, family)] of the VXLAN devices in ``links`` (``ip -d -json link show type vxlan``) that are
    not in ``ours`` and use UDP ``port`` over one of the underlay ``families``."""
    out = []
    for link in links or []:
        info = link.get("linkinfo") or {}
        if info.get("info_kind") != "vxlan" or link.get("ifname") in ours:
            continue
        data = info.get("info_data") or {}
        if data.get("port") != port:
            continue
        for fam in sorted(vxlan_families(data) & set(families)):
            out.append((link.get("ifname"), data.get("id"), fam))
    return out


def check_foreign_vxlan(runner, node, spec, ours, links=None):
    """EngineError when a VXLAN device not in ``ours`` uses the UDP port of ``spec`` over one of its devices'
    underlay families; ``links``: ``ip -d -json link show type vxlan`` (read here when None)."""
    devices = spec.get("devices") or []
    if not devices:
        return
    port = spec.get("port")
    by_family = {int(d["family"]): d["name"] for d in devices}
    if links is None:
        links = run_ip_json(runner, ["-d", "link", "show", "type", "vxlan"], numeric=False, tolerate=True)
    found = foreign_vxlan(links, set(ours), port, by_family)
    if not found:
        return
    names = sorted({name for name, _vni, _fam in found})
    problems = ["%s (VNI %s) uses UDP port %s over IPv%d, as %s would" % (name, vni, port, fam, by_family[fam])
                for name, vni, fam in found]
    raise EngineError(
        "node %s: the VXLAN device%s %s (not podnet.cluster's) already use%s UDP port %s (podnet_vxlan_port) over "
        "the underlay family of the overlay: %s. The kernel would refuse podnet.cluster's device (the same VNI: "
        "'already exists'; other receive flags: 'Address already in use'), or share the port with it and %s would "
        "drop that device's traffic from every host that is not a peer. Nothing was changed: set podnet_vxlan_port "
        "to a port no VXLAN device of the nodes uses, or remove %s if it is a leftover"
        % (node, "" if len(names) == 1 else "s", ", ".join(names), "s" if len(names) == 1 else "", port,
           limit(problems), "the chain PODNET-VXLAN", " and ".join(names)),
        foreign=[dict(device=name, vni=vni, family=fam, port=port) for name, vni, fam in found])
