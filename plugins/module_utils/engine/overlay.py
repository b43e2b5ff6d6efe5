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
entries and routes go through one ``ip -batch``, FDB entries through one ``bridge -batch``. What is read of the
node, and the refusals, are engine/overlay_node.py's. Standard library only.
"""

from __future__ import annotations

import ipaddress
import re
from socket import inet_aton

from ansible_collections.podnet.cluster.plugins.module_utils.engine.addrs import parse_address, parse_network
from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay_node import (
    MAX_LISTED,
    TX_CSUM_FEATURE,
    check_foreign_vxlan,
    device_problems,
    ethtool_features,
    limit,
    overlay_mtu,
    read_device,
    read_state,
    refuse_other_kind,
)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import run_ip_batch

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# A peer line over IPv4 exactly as the controller writes it (single spaces, canonical addresses, a prefix length
# without leading zeros): taken apart by one match. Every other line goes the general way, which also words the
# errors; a line matched here that fails a check does too.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IP4 = r"%s(?:\.%s){3}" % (_OCTET, _OCTET)
_LINE4 = re.compile(r"(%s)/(3[0-2]|[12][0-9]|[0-9]) via (%s) mac ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}) dst (%s) "
                    r"peer (\S+)\Z" % (_IP4, _IP4, _IP4))


def _family(text):
    return 6 if ":" in text else 4


def _peer_line(idx, line, problems):
    """(block, vtep, mac, dst, name) of one peer line in any form, None for a blank one; a problem is appended to
    ``problems`` (and None returned)."""
    fields = str(line).split()
    if not fields:
        return None
    if len(fields) != 9 or fields[1] != "via" or fields[3] != "mac" or fields[5] != "dst" or fields[7] != "peer":
        problems.append("line %d %r is not 'BLOCK via VTEP mac MAC dst NODE_IP peer NAME'" % (idx + 1, line))
        return None
    block, vtep, mac, dst, name = fields[0], fields[2], fields[4].lower(), fields[6], fields[8]
    try:
        fam, num, plen, block = parse_network(block, strict=True)
        vfam, vnum, vtep = parse_address(vtep)
        dst = parse_address(dst)[2]
    except ValueError as exc:
        problems.append("peer %s: %s" % (name, exc))
        return None
    bits = 32 if fam == 4 else 128
    if vfam != fam or (vnum >> (bits - plen)) != (num >> (bits - plen)):
        problems.append("peer %s: VTEP address %s is not inside its block %s" % (name, vtep, block))
        return None
    if not _MAC.match(mac) or int(mac[:2], 16) & 1:
        problems.append("peer %s: %r is not a unicast MAC address" % (name, mac))
        return None
    return block, vtep, mac, dst, name


def peer_tuples(peers, node="?"):
    """[(block, vtep, mac, dst, name)] of the spec's peer lines (a string of lines or a list); EngineError naming
    every bad line. Addresses are checked as integers (engine.addrs), never as thousands of ipaddress objects."""
    if isinstance(peers, str):
        peers = peers.splitlines()
    out, problems = [], []
    match, from_bytes = _LINE4.match, int.from_bytes
    for idx, line in enumerate(peers or []):
        m = match(line) if isinstance(line, str) else None
        if m is not None:
            addr, plen, vtep, mac, dst, name = m.groups()
            shift = 32 - int(plen)
            num = from_bytes(inet_aton(addr), "big")
            mac = mac.lower()
            if not (num & ((1 << shift) - 1)) and from_bytes(inet_aton(vtep), "big") >> shift == num >> shift \
                    and not int(mac[:2], 16) & 1:
                out.append((addr + "/" + plen, vtep, mac, dst, name))
                continue
        one = _peer_line(idx, line, problems)
        if one is not None:
            out.append(one)
    if problems:
        raise EngineError("node %s: invalid overlay peers: %s" % (node, limit(problems)), problems=problems)
    return out


def parse_peers(peers, node="?"):
    """[{block, vtep, mac, dst, peer}] of the spec's peer lines (a string of lines or a list); EngineError."""
    return [dict(block=b, vtep=v, mac=m, dst=d, peer=n) for b, v, m, d, n in peer_tuples(peers, node)]


def _render_entries(neigh, fdb, routes):
    lines = ["neigh %s lladdr %s" % (k[1], v) for k, v in neigh.items()]
    lines += ["fdb %s dst %s" % (k[1], v) for k, v in fdb.items()]
    lines += ["route %s via %s" % (k[1], v) for k, v in routes.items()]
    return lines


def _addr_add(address, name):
    """``addr add`` of a VTEP address; IPv6 ones with ``nodad``.

    Duplicate address detection on the overlay proves nothing (its solicitation goes to a multicast MAC that
    has no FDB entry, so nobody can answer) and keeps the address tentative for one to two seconds: no local
    route, not chosen as a source, so a node's state and its first packets would depend on when one looks. The
    plan gives every node its own addresses.
    """
    return "addr add %s dev %s%s" % (address, name, " nodad" if ":" in address else "")


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
    peers = peer_tuples(spec.get("peers"), node) if devices else []
    by_family = {int(d["family"]): d for d in devices}
    mtus = overlay_mtu(runner, spec, state["addr"]) if devices else {}
    names = {fam: d["name"] for fam, d in by_family.items()}
    want_neigh, want_fdb, want_routes, owners = {}, {}, {}, {}
    problems = []
    for block, vtep, mac, dst, peer in peers:
        fam = 6 if ":" in dst else 4
        name = names.get(fam)
        if name is None:
            problems.append("peer %s: its node IP %s is IPv%d, and this node has no IPv%d node IP (no device for it)"
                            % (peer, dst, fam, fam))
            continue
        key = (name, vtep)
        if want_neigh.get(key, mac) != mac:
            problems.append("VTEP address %s is wanted with two MACs (peer %s)" % (vtep, peer))
        want_neigh[key] = mac
        fkey = (name, mac)
        if want_fdb.get(fkey, dst) != dst:
            problems.append("VTEP MAC %s is wanted at two node IPs %s and %s (peer %s): two nodes with one MAC"
                            % (mac, want_fdb[fkey], dst, peer))
        want_fdb[fkey] = dst
        if block in owners:
            problems.append("block %s is wanted twice (peers %s and %s)" % (block, owners[block], peer))
        owners[block] = peer
        want_routes[(name, block)] = vtep
    if problems:
        raise EngineError("node %s: invalid overlay: %s" % (node, limit(problems)), problems=problems)

    # a peer block routed by somebody else (another protocol, another device) is never taken over
    main = state["main"]
    if owners:
        conflicts = []
        for fam in (4, 6):
            blocks = {b for b in owners if _family(b) == fam}
            if not blocks:
                continue
            for dst, dev, proto, _gateway in main[fam]:
                if dst in blocks and proto != protocol:
                    conflicts.append("block %s (peer %s): the main table already has a route to it on %s with "
                                     "protocol %s" % (dst, owners[dst], dev or None, proto))
        if conflicts:
            raise EngineError("node %s: %d peer block(s) are routed by something podnet.cluster does not own; they "
                              "are never overwritten: %s" % (node, len(conflicts), limit(conflicts)),
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
            why = device_problems(link, dev, port, vni)
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
            if create or ethtool_features(runner, name).get(TX_CSUM_FEATURE) != value:
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
