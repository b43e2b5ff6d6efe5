# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)
# SPDX-License-Identifier: Apache-2.0
"""The overlay engine (fabric vxlan): static VXLAN devices and every peer's entries, no daemon.

The controller computes everything (plugins/plugin_utils/document.py): per underlay family one device (VNI, UDP
port, ``local`` = the node IP, learning off, a fixed VTEP MAC, the node's VTEP addresses: of each of its blocks the
first address as a /32 (IPv4) or the last as a /128 (IPv6, added with ``nodad``)), and per peer and pod family one
line ``BLOCK via VTEP mac MAC dst NODE_IP peer NAME``. Here, on the node, the part first refuses a VXLAN device
that is not podnet.cluster's on the same UDP port and underlay family, then reads the devices and their entries
and writes, in this order, per peer:

* a permanent neighbour entry ``VTEP lladdr MAC`` (no ARP/ND over the overlay),
* a permanent FDB entry ``MAC dst NODE_IP`` (where the peer's VTEP is on the underlay),
* the route ``BLOCK via VTEP dev DEVICE onlink proto PROTOCOL``.

The devices are podnet.cluster's alone: every permanent neighbour and FDB entry on them, and every route through
them with our protocol, is ours; what is not wanted goes. Nothing on other devices is read as ours. Neighbour
entries and routes go through one ``ip -batch``, FDB entries through one ``bridge -batch``.
Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import re

from ansible_collections.podnet.cluster.plugins.module_utils.engine.routes import parse_address, parse_network
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, run_reads
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    find_link_with_address,
    get_link,
    link_kind,
    ip_bin,
    route_protocol,
    run_ip_batch,
    run_ip_json,
)

# Bytes VXLAN adds to every inner frame: outer IP (20 / 40) + UDP (8) + VXLAN (8) + inner Ethernet (14).
OVERHEAD = {4: 50, 6: 70}
TX_CSUM_FEATURE = "tx-checksum-ip-generic"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_LISTED = 10


def _limit(items):
    text = "; ".join(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        text += "; ... and %d more" % (len(items) - MAX_LISTED)
    return text


def _family(text):
    return 6 if ":" in text else 4


def parse_peers(peers, node="?"):
    """[{block, vtep, mac, dst, peer}] of the spec's peer lines (a string of lines or a list); EngineError.

    Addresses are parsed as integers (routes.parse_network / parse_address): thousands of ipaddress objects would
    cost more than the whole reconcile.
    """
    if isinstance(peers, str):
        peers = peers.splitlines()
    out, problems = [], []
    for idx, line in enumerate(peers or []):
        fields = str(line).split()
        if not fields:
            continue
        if len(fields) != 9 or fields[1] != "via" or fields[3] != "mac" or fields[5] != "dst" or fields[7] != "peer":
            problems.append("line %d %r is not 'BLOCK via VTEP mac MAC dst NODE_IP peer NAME'" % (idx + 1, line))
            continue
        block, vtep, mac, dst, name = fields[0], fields[2], fields[4].lower(), fields[6], fields[8]
        try:
            fam, num, plen, block = parse_network(block, strict=True)
            vfam, vnum, vtep = parse_address(vtep)
            dst = parse_address(dst)[2]
        except ValueError as exc:
            problems.append("peer %s: %s" % (name, exc))
            continue
        bits = 32 if fam == 4 else 128
        if vfam != fam or (vnum >> (bits - plen)) != (num >> (bits - plen)):
            problems.append("peer %s: VTEP address %s is not inside its block %s" % (name, vtep, block))
            continue
        if not _MAC.match(mac) or int(mac[:2], 16) & 1:
            problems.append("peer %s: %r is not a unicast MAC address" % (name, mac))
            continue
        out.append(dict(block=block, vtep=vtep, mac=mac, dst=dst, peer=name))
    if problems:
        raise EngineError("node %s: invalid overlay peers: %s" % (node, _limit(problems)), problems=problems)
    return out


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


def _ethtool_features(runner, name):
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


def _render_entries(neigh, fdb, routes):
    lines = ["neigh %s lladdr %s" % (k[1], v) for k, v in neigh.items()]
    lines += ["fdb %s dst %s" % (k[1], v) for k, v in fdb.items()]
    lines += ["route %s via %s" % (k[1], v) for k, v in routes.items()]
    return lines


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


def read_state(runner, names):
    """What the overlay reads of the node, in one round of commands run side by side (engine.runner.run_reads):
    the VXLAN links, every address, both families' main tables and, per name in ``names``, its permanent
    neighbours and FDB entries. A dict: ``vxlan`` (``ip -d -json link show type vxlan``), ``addr``, ``main``
    ({family: routes}), ``neigh`` and ``fdb`` ({name: entries}; [] for a device that does not exist)."""
    ip, bridge = ip_bin(runner), runner.which("bridge")
    argvs = [[ip, "-d", "-json", "link", "show", "type", "vxlan"], [ip, "-json", "addr", "show"],
             [ip, "-N", "-json", "-4", "route", "show", "table", "main"],
             [ip, "-N", "-json", "-6", "route", "show", "table", "main"]]
    for name in names:
        argvs.append([ip, "-json", "neigh", "show", "dev", name, "nud", "permanent"])
        argvs.append([bridge, "-json", "fdb", "show", "dev", name])
    results = run_reads(runner, argvs)
    state = dict(vxlan=_decode(argvs[0], results[0], tolerate=True), addr=_decode(argvs[1], results[1]),
                 main={4: _decode(argvs[2], results[2], tolerate=True),
                       6: _decode(argvs[3], results[3], tolerate=True)},
                 neigh={}, fdb={})
    present = {link.get("ifname") for link in state["vxlan"]}
    for index, name in enumerate(names):
        neigh_at, fdb_at = 4 + 2 * index, 5 + 2 * index
        # a device that does not exist (yet) has no entries; another kind of link of that name is read by get_link
        exists = name in present
        state["neigh"][name] = _decode(argvs[neigh_at], results[neigh_at], tolerate=not exists)
        state["fdb"][name] = _decode(argvs[fdb_at], results[fdb_at], tolerate=not exists)
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
    neigh = {}
    for entry in state["neigh"][name]:
        if entry.get("dst") and entry.get("lladdr"):
            neigh[(name, entry["dst"])] = entry["lladdr"].lower()
    fdb = {}
    for entry in state["fdb"][name]:
        if entry.get("state") == "permanent" and entry.get("dst") and entry.get("mac"):
            key = (name, entry["mac"].lower())
            if key in fdb:
                fdb[key] = fdb[key] + "," + entry["dst"]      # more than one destination: replaced below
            else:
                fdb[key] = entry["dst"]
    routes = {}
    for fam in (4, 6):
        for r in state["main"].get(fam) or []:
            if r.get("dev") == name and route_protocol(r) == protocol and r.get("dst"):
                dst = r["dst"]
                if "/" not in dst:
                    dst += "/%d" % (32 if fam == 4 else 128)
                routes[(name, dst)] = r.get("gateway") or ""
    return link, addrs, neigh, fdb, routes


def _addr_add(address, name):
    """``addr add`` of a VTEP address; IPv6 ones with ``nodad``.

    Duplicate address detection on the overlay proves nothing (its solicitation goes to a multicast MAC that
    has no FDB entry, so nobody can answer) and keeps the address tentative for one to two seconds: no local
    route, not chosen as a source, so a node's state and its first packets would depend on when one looks. The
    plan gives every node its own addresses.
    """
    return "addr add %s dev %s%s" % (address, name, " nodad" if ":" in address else "")


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


def _device_problems(link, dev, port, vni):
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
           _limit(problems), "the chain PODNET-VXLAN", " and ".join(names)),
        foreign=[dict(device=name, vni=vni, family=fam, port=port) for name, vni, fam in found])


def plan_overlay(runner, spec, node="?", protocol=158, state="present", old=None, diff=True, ours=()):
    """The whole change of the overlay; ``old``: the overlay spec of the last run (its devices go when unwanted);
    ``ours``: more device names that are podnet.cluster's (the record's devices, removed by another part).

    Raises EngineError before any write (a peer's block routed by somebody else, an address not on this node,
    another VXLAN device on the port).
    """
    spec = spec if state == "present" and spec else {}
    old = old or {}
    devices = list(spec.get("devices") or [])
    wanted_names = [d["name"] for d in devices]
    gone_names = [d["name"] for d in old.get("devices") or [] if d["name"] not in wanted_names]
    vni, port = spec.get("vni"), spec.get("port")
    link_lines, del_lines, fdb_lines = [], [], []
    before, after = [], []
    added, removed, replaced, recreated = [], [], [], []
    ethtool_cmds = []

    # everything read at once: the VXLAN links, addresses, main tables, and every device's entries
    state = read_state(runner, wanted_names + gone_names) if wanted_names or gone_names else \
        dict(vxlan=[], addr=[], main={4: [], 6: []}, neigh={}, fdb={})

    # ---- devices an earlier run made that are no longer wanted: the kernel drops their entries with them
    for name in gone_names:
        link, addrs, neigh, fdb, routes = read_device(runner, name, protocol, state=state)
        if link is not None:
            refuse_other_kind(node, link)
            link_lines.append("link del %s" % name)
            removed.append("device %s" % name)
            before.append("device %s" % name)
            before.extend(_render_entries(neigh, fdb, routes))

    if devices:
        # another VXLAN device on our port and family: refused before any change
        check_foreign_vxlan(runner, node, spec, set(wanted_names) | set(gone_names) | set(ours), state["vxlan"])
    if devices and spec.get("tx_checksum_offload") is not None:
        runner.which("ethtool")     # in the preflight, not halfway through the change
    peers = parse_peers(spec.get("peers"), node) if devices else []
    by_family = {int(d["family"]): d for d in devices}
    mtus = overlay_mtu(runner, spec, state["addr"]) if devices else {}
    want_neigh, want_fdb, want_routes, owners = {}, {}, {}, {}
    problems = []
    for p in peers:
        dev = by_family.get(_family(p["dst"]))
        if dev is None:
            problems.append("peer %s: its node IP %s is IPv%d, and this node has no IPv%d node IP (no device for it)"
                            % (p["peer"], p["dst"], _family(p["dst"]), _family(p["dst"])))
            continue
        name = dev["name"]
        key = (name, p["vtep"])
        if want_neigh.get(key, p["mac"]) != p["mac"]:
            problems.append("VTEP address %s is wanted with two MACs (peer %s)" % (p["vtep"], p["peer"]))
        want_neigh[key] = p["mac"]
        fkey = (name, p["mac"])
        if want_fdb.get(fkey, p["dst"]) != p["dst"]:
            problems.append("VTEP MAC %s is wanted at two node IPs %s and %s (peer %s): two nodes with one MAC"
                            % (p["mac"], want_fdb[fkey], p["dst"], p["peer"]))
        want_fdb[fkey] = p["dst"]
        rkey = (name, p["block"])
        if p["block"] in owners:
            problems.append("block %s is wanted twice (peers %s and %s)" % (p["block"], owners[p["block"]], p["peer"]))
        owners[p["block"]] = p["peer"]
        want_routes[rkey] = p["vtep"]
    if problems:
        raise EngineError("node %s: invalid overlay: %s" % (node, _limit(problems)), problems=problems)

    # a peer block routed by somebody else (another protocol, another device) is never taken over
    main = state["main"]
    if owners:
        conflicts = []
        for fam in (4, 6):
            blocks = {b for b in owners if _family(b) == fam}
            if not blocks:
                continue
            for r in main[fam]:
                dst = r.get("dst") or ""
                if "/" not in dst and dst != "default":
                    dst += "/%d" % (32 if fam == 4 else 128)
                if dst in blocks and route_protocol(r) != protocol:
                    conflicts.append("block %s (peer %s): the main table already has a route to it on %s with "
                                     "protocol %s" % (dst, owners[dst], r.get("dev"), route_protocol(r)))
        if conflicts:
            raise EngineError("node %s: %d peer block(s) are routed by something podnet.cluster does not own; they "
                              "are never overwritten: %s" % (node, len(conflicts), _limit(conflicts)),
                              conflicts=conflicts)

    have_neigh, have_fdb, have_routes = {}, {}, {}
    for dev in devices:
        name = dev["name"]
        link, addrs, neigh, fdb, routes = read_device(runner, name, protocol, state=state)
        mtu = mtus[name]
        mac = dev["mac"].lower()
        wanted_addrs = list(dev.get("addresses") or [])
        after.append("device %s vxlan id %s local %s dstport %s nolearning address %s mtu %d" % (
            name, vni, dev["local"], port, mac, mtu))
        after.extend("address %s dev %s" % (a, name) for a in wanted_addrs)
        create = link is None
        if link is not None:
            refuse_other_kind(node, link)
            data = ((link.get("linkinfo") or {}).get("info_data") or {})
            before.append("device %s vxlan id %s local %s dstport %s %saddress %s mtu %s" % (
                name, data.get("id"), data.get("local") or data.get("local6"), data.get("port"),
                "learning " if data.get("learning") else "nolearning ", link.get("address"), link.get("mtu")))
            before.extend("address %s dev %s" % (a, name) for a in addrs)
            why = _device_problems(link, dev, port, vni)
            if why:
                link_lines.append("link del %s" % name)
                recreated.append("%s (%s)" % (name, "; ".join(why)))
                create = True
            else:
                have_neigh.update(neigh)
                have_fdb.update(fdb)
                have_routes.update(routes)
            before.extend(_render_entries(neigh, fdb, routes))
        if create:
            fam = int(dev["family"])
            link_lines.append("link add %s address %s mtu %d type vxlan id %s local %s dstport %s nolearning"
                              % (name, mac, mtu, vni, dev["local"], port))
            if fam == 6:
                link_lines[-1] += " udp6zerocsumrx"
            link_lines.append("link set %s up" % name)
            link_lines.extend(_addr_add(a, name) for a in wanted_addrs)
            added.append("device %s" % name)
        else:
            if (link.get("address") or "").lower() != mac:
                link_lines.append("link set %s address %s" % (name, mac))
            if link.get("mtu") != mtu:
                link_lines.append("link set %s mtu %d" % (name, mtu))
            if "UP" not in (link.get("flags") or []):
                link_lines.append("link set %s up" % name)
            canon = {str(ipaddress.ip_interface(a)) for a in addrs}
            for a in wanted_addrs:
                if str(ipaddress.ip_interface(a)) not in canon:
                    link_lines.append(_addr_add(a, name))
            wanted_canon = {str(ipaddress.ip_interface(a)) for a in wanted_addrs}
            for a in addrs:
                if str(ipaddress.ip_interface(a)) not in wanted_canon:
                    link_lines.append("addr del %s dev %s" % (a, name))
        toff = spec.get("tx_checksum_offload")
        if toff is not None:
            value = "on" if toff else "off"
            if create or _ethtool_features(runner, name).get(TX_CSUM_FEATURE) != value:
                ethtool_cmds.append([name, TX_CSUM_FEATURE, value])
            after.append("ethtool %s %s %s" % (name, TX_CSUM_FEATURE, value))

    # ---- entries: stale ones go (routes, FDB, neighbours), then the wanted ones (neighbours, FDB, routes); a kind
    # the node holds exactly as wanted is not compared entry by entry (the no-change run of thousands of peers)
    neigh_del, neigh_add, fdb_add, route_add = [], [], [], []
    gone = {"route": [], "fdb": [], "neigh": []}
    new = {"route": [], "fdb": [], "neigh": []}
    other = {"route": [], "fdb": [], "neigh": []}
    if have_routes != want_routes:
        for key, via in sorted(have_routes.items()):
            if key not in want_routes:
                del_lines.append("route del %s dev %s proto %d" % (key[1], key[0], protocol))
                gone["route"].append("route %s via %s" % (key[1], via))
        for key, via in sorted(want_routes.items()):
            cur = have_routes.get(key)
            if cur != via:
                route_add.append("route replace %s via %s dev %s onlink proto %d" % (key[1], via, key[0], protocol))
                (new["route"] if cur is None else other["route"]).append("route %s via %s" % (key[1], via))
    if have_fdb != want_fdb:
        for key, dst in sorted(have_fdb.items()):
            if key not in want_fdb:
                for one in dst.split(","):
                    fdb_lines.append("fdb del %s dev %s dst %s self" % (key[1], key[0], one))
                gone["fdb"].append("fdb %s dst %s" % (key[1], dst))
        for key, dst in sorted(want_fdb.items()):
            cur = have_fdb.get(key)
            if cur != dst:
                if cur and "," in cur:
                    for one in cur.split(","):
                        fdb_lines.append("fdb del %s dev %s dst %s self" % (key[1], key[0], one))
                fdb_add.append("fdb replace %s dev %s dst %s self permanent" % (key[1], key[0], dst))
                (new["fdb"] if cur is None else other["fdb"]).append("fdb %s dst %s" % (key[1], dst))
    if have_neigh != want_neigh:
        for key, mac in sorted(have_neigh.items()):
            if key not in want_neigh:
                neigh_del.append("neigh del %s dev %s" % (key[1], key[0]))
                gone["neigh"].append("neigh %s lladdr %s" % (key[1], mac))
        for key, mac in sorted(want_neigh.items()):
            cur = have_neigh.get(key)
            if cur != mac:
                neigh_add.append("neigh replace %s lladdr %s dev %s nud permanent" % (key[1], mac, key[0]))
                (new["neigh"] if cur is None else other["neigh"]).append("neigh %s lladdr %s" % (key[1], mac))
    removed += gone["route"] + gone["fdb"] + gone["neigh"]
    added += new["neigh"] + new["fdb"] + new["route"]
    replaced += other["neigh"] + other["fdb"] + other["route"]

    if diff:
        after.extend(_render_entries(want_neigh, want_fdb, want_routes))
    commands = dict(link=link_lines, route_del=del_lines, neigh_del=neigh_del, fdb=fdb_lines + fdb_add,
                    neigh=neigh_add, route=route_add, ethtool=ethtool_cmds)
    changed = any(commands.values())
    header = "overlay (vxlan)"
    return dict(
        changed=changed, node=node, devices=wanted_names, mtu=mtus,
        added=added[:MAX_LISTED * 10], removed=removed[:MAX_LISTED * 10], replaced=replaced[:MAX_LISTED * 10],
        recreated=recreated, entries=len(want_neigh) + len(want_fdb) + len(want_routes),
        commands=commands,
        diff=dict(before="".join(l + "\n" for l in sorted(before)), after="".join(l + "\n" for l in sorted(after)),
                  before_header=header, after_header=header) if diff else None,
    )


def run_bridge_batch(runner, lines):
    """``bridge -batch -`` with ``lines`` on stdin, in one process."""
    if not lines:
        return
    cmd = [runner.which("bridge"), "-batch", "-"]
    rc, out, err = runner.run(cmd, data="\n".join(lines) + "\n")
    if rc != 0:
        raise EngineError("%s failed (the batch stops at the first failing line): %s"
                          % (" ".join(cmd), (err or out).strip()), rc=rc, batch=list(lines))


def apply_overlay(runner, change):
    """Devices first, then stale routes, FDB (stale and wanted), stale and wanted neighbours, wanted routes.

    The wanted entries go in the order the kernel needs them: a neighbour, its FDB entry, then the route.
    """
    c = change["commands"]
    run_ip_batch(runner, c["link"])
    run_ip_batch(runner, c["route_del"])
    run_ip_batch(runner, c["neigh_del"] + c["neigh"])
    run_bridge_batch(runner, c["fdb"])
    run_ip_batch(runner, c["route"])
    for name, feature, value in c["ethtool"]:
        rc, out, err = runner.run([runner.which("ethtool"), "-K", name, feature, value])
        if rc != 0:
            raise EngineError("ethtool -K %s %s %s failed: %s" % (name, feature, value, (err or out).strip()))
