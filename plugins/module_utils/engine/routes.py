# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The routes engine: every pod route of one node (or router), both families, in one pass.

Our routes carry the route protocol ``protocol`` (158 by default); only they are ever replaced or
deleted. Every gateway must be on-link (its best route in the main table, ignoring ours, is directly
connected); a wanted destination already routed by somebody else is an error. Standard library only.
"""

from __future__ import annotations

import ipaddress
import os
import socket

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    RouteIndex,
    describe_route,
    route_dst,
    route_is_onlink,
    route_is_unicast,
    route_metric,
    route_protocol,
    run_ip_batch,
    run_ip_json,
)

# iproute2's names of route protocols (rtnetlink.h and /etc/iproute2/rt_protos): numbers owned by others.
PROTO_NAMES = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra", 10: "mrt",
               11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp", 17: "mrouted",
               18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip",
               192: "eigrp"}
OUR_PROTO_NAMES = ("podnet",)
RT_PROTOS_FILES = ("/etc/iproute2/rt_protos", "/usr/share/iproute2/rt_protos", "/usr/lib/iproute2/rt_protos")
DEFAULT_METRIC = {4: 0, 6: 1024}
MAX_LISTED = 10


def proto_text(proto):
    if isinstance(proto, int) and proto in PROTO_NAMES:
        return "%s (%d)" % (PROTO_NAMES[proto], proto)
    return str(proto)


def known_protocols(files=RT_PROTOS_FILES):
    """{number: name} of the built-in names plus every rt_protos file (and its .d directory) present."""
    names = dict(PROTO_NAMES)
    paths = []
    for path in files:
        paths.append(path)
        directory = path + ".d"
        if os.path.isdir(directory):
            paths.extend(os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(".conf"))
    for path in paths:
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2:
                try:
                    number = int(fields[0], 0)
                except ValueError:
                    continue
                names.setdefault(number, fields[1])
    return names


def check_protocol(proto, files=RT_PROTOS_FILES):
    """EngineError unless ``proto`` is a free number (5..255, not named for another routing daemon)."""
    if not isinstance(proto, int) or not 5 <= proto <= 255:
        raise EngineError("route protocol %r (podnet_route_protocol) is outside 5..255 (0-4 are the kernel's own "
                          "protocols)" % (proto,))
    name = known_protocols(files).get(proto)
    if name is not None and name not in OUR_PROTO_NAMES:
        raise EngineError("route protocol %d (podnet_route_protocol) is %s's number (rt_protos): routes of %s "
                          "would be taken for podnet.cluster's and replaced or deleted; choose a free number, such "
                          "as the default 158" % (proto, name, name))


def _limit(items):
    text = "; ".join(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        text += "; ... and %d more" % (len(items) - MAX_LISTED)
    return text


def parse_route(item, index):
    """(dst text, via text, peer) of a route given as a dict or as ``"DST via VIA [peer NAME]"``."""
    if isinstance(item, dict):
        return str(item.get("dst") or "").strip(), str(item.get("via") or "").strip(), item.get("peer")
    fields = str(item).split()
    if len(fields) in (3, 5) and fields[1] == "via" and (len(fields) == 3 or fields[3] == "peer"):
        return fields[0], fields[2], fields[4] if len(fields) == 5 else None
    raise EngineError("route %d %r is not 'DST via GATEWAY [peer NAME]' nor a dict with dst and via" % (index + 1, item))


def desired_routes(routes, node):
    """{family: {ip_network: {via, peer}}} of the wanted routes, validated (EngineError lists every problem)."""
    desired = {4: {}, 6: {}}
    problems = []
    for idx, item in enumerate(routes or []):
        text, via_text, peer = parse_route(item, idx)
        label = peer or "route %d" % (idx + 1)
        try:
            dst = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            try:
                net = ipaddress.ip_network(text, strict=False)
                problems.append("peer %s: dst %s has host bits set (the network is %s)" % (label, text, net))
            except ValueError:
                problems.append("peer %s: dst %r is not a network: %s" % (label, text, exc))
            continue
        try:
            via = ipaddress.ip_address(via_text)
        except ValueError as exc:
            problems.append("peer %s: via %r is not an IP address: %s" % (label, via_text, exc))
            continue
        if via.version != dst.version:
            problems.append("peer %s: via %s is IPv%d but dst %s is IPv%d" % (label, via, via.version, dst, dst.version))
            continue
        if via in dst:
            problems.append("peer %s: via %s lies inside its own destination %s" % (label, via, dst))
            continue
        if dst in desired[dst.version]:
            other = desired[dst.version][dst]
            problems.append("dst %s is wanted twice: via %s (peer %s) and via %s (peer %s)"
                            % (dst, other["via"], other["peer"], via, label))
            continue
        desired[dst.version][dst] = dict(via=via, peer=peer)
    if problems:
        raise EngineError("node %s: invalid routes: %s" % (node, _limit(problems)), problems=problems)
    return desired


def _line(dst, via, dev, metric=None, rtype=None):
    text = "%s via %s dev %s" % (dst, via, dev)
    if rtype:
        text = "%s %s" % (rtype, text)
    if metric is not None:
        text += " metric %s" % metric
    return text


def _existing_line(route, family):
    if not route_is_unicast(route) or route.get("nexthops") or not route.get("gateway"):
        return describe_route({k: v for k, v in route.items() if k != "protocol"})
    metric = route_metric(route)
    return _line(route.get("dst", "default"), route["gateway"], route.get("dev"),
                 metric if metric != DEFAULT_METRIC[family] else None)


def _sort_key(line):
    head = line.split()[0]
    try:
        net = ipaddress.ip_network(head, strict=False)
        return (net.version, net.network_address.packed, net.prefixlen, line)
    except ValueError:
        return (9, b"", 0, line)


def plan_routes(runner, routes=(), node=None, protocol=158, table="main", state="present", diff=True):
    """The whole change of our routes; raises EngineError (off-link gateway, foreign route...) before any write.

    ``diff`` False skips the before/after text (sorting thousands of lines costs more than the reconcile).
    """
    node = node or socket.gethostname()
    proto = protocol
    table = str(table).strip()
    check_protocol(proto)
    if not table or any(c.isspace() for c in table):
        raise EngineError("table %r is not a table name or number" % table)
    desired = desired_routes(routes, node) if state == "present" else {4: {}, 6: {}}

    mains, tables = {}, {}
    for fam in (4, 6):
        tolerate = fam == 6 and not desired[6]
        mains[fam] = run_ip_json(runner, ["-%d" % fam, "route", "show", "table", "main"], tolerate=tolerate)
        tables[fam] = mains[fam] if table in ("main", "254") else run_ip_json(
            runner, ["-%d" % fam, "route", "show", "table", table], tolerate=tolerate)
    local_ips = set()
    if desired[4] or desired[6]:
        for entry in run_ip_json(runner, ["addr", "show"], numeric=False):
            for info in entry.get("addr_info", []):
                try:
                    local_ips.add(ipaddress.ip_address(info["local"]))
                except (KeyError, ValueError):
                    pass

    offlink, conflicts, dev_of = [], [], {}
    for fam in (4, 6):
        if not desired[fam]:
            continue
        lpm = RouteIndex(mains[fam], fam, exclude_protocol=proto)
        exact = RouteIndex(tables[fam], fam)
        cache = {}
        for dst, want in desired[fam].items():
            via = want["via"]
            peer = want["peer"] or "(unnamed peer)"
            if via in local_ips:
                offlink.append("peer %s: via %s is an address of this node %s itself" % (peer, via, node))
                continue
            if via not in cache:
                cache[via] = lpm.lookup(via)
            best = cache[via]
            if not best:
                offlink.append("peer %s at %s: no route at all to it in the main table" % (peer, via))
            elif not all(route_is_onlink(r) for r in best):
                offlink.append("peer %s at %s: its best route in the main table is '%s', not a directly connected one"
                               % (peer, via, describe_route(best[0])))
            elif len({r.get("dev") for r in best}) > 1:
                offlink.append("peer %s at %s: on-link through more than one device (%s); cannot choose"
                               % (peer, via, ", ".join(sorted({r.get("dev") for r in best}))))
            else:
                dev_of[(fam, dst)] = best[0]["dev"]
            for other in exact.exact(dst):
                if route_protocol(other) != proto:
                    conflicts.append("dst %s (peer %s): table %s already has '%s' with protocol %s"
                                     % (dst, peer, table, describe_route({k: v for k, v in other.items()
                                                                           if k != "protocol"}),
                                        proto_text(route_protocol(other))))
    if offlink:
        raise EngineError(
            "node %s cannot reach %d gateway(s) on-link: %s. Routes to pod subnets via a node address "
            "(host-gw) need nodes that share a link (L2-adjacent); for nodes behind a router set podnet_fabric "
            "to a routed fabric (router or gce) instead." % (node, len(offlink), _limit(offlink)),
            not_onlink=offlink)
    if conflicts:
        raise EngineError(
            "node %s: %d wanted pod route(s) collide with routes podnet.cluster does not own (protocol other "
            "than %d); they are never overwritten: %s. Remove or renumber the foreign route(s)."
            % (node, len(conflicts), proto, _limit(conflicts)),
            conflicts=conflicts)

    commands = {"4": [], "6": []}
    added, replaced, removed = [], [], []
    before_lines, after_lines = [], []
    for fam in (4, 6):
        ours = [r for r in tables[fam] if route_protocol(r) == proto]
        before_lines.extend(_existing_line(r, fam) for r in ours)
        by_dst, stale = {}, []
        for r in ours:
            try:
                dst = route_dst(r, fam)
            except ValueError:
                stale.append(r)
                continue
            if dst in desired[fam] and dst not in by_dst and route_is_unicast(r) \
                    and route_metric(r) == DEFAULT_METRIC[fam]:
                by_dst[dst] = r
            else:
                stale.append(r)
        dels, reps, adds = [], [], []
        for r in stale:
            line = "route del %s proto %d table %s" % (r.get("dst", "default"), proto, table)
            if r.get("metric") is not None:
                line += " metric %s" % r["metric"]
            if r.get("tos"):
                line += " tos %s" % r["tos"]
            dels.append(line)
            removed.append(dict(dst=r.get("dst", "default"), via=r.get("gateway"), dev=r.get("dev"),
                                route=_existing_line(r, fam)))
        for dst, want in sorted(desired[fam].items(), key=lambda kv: (kv[0].network_address, kv[0].prefixlen)):
            dev = dev_of[(fam, dst)]
            via = want["via"]
            after_lines.append(_line(dst, via, dev))
            spec = "%s via %s dev %s proto %d table %s" % (dst, via, dev, proto, table)
            cur = by_dst.get(dst)
            if cur is None:
                adds.append("route add " + spec)
                added.append(_line(dst, via, dev))
                continue
            same = (not cur.get("nexthops") and cur.get("gateway") is not None
                    and ipaddress.ip_address(cur["gateway"]) == via and cur.get("dev") == dev)
            if not same:
                reps.append("route replace " + spec)
                replaced.append(dict(dst=str(dst), via=str(via), dev=dev, peer=want["peer"],
                                     old=_existing_line(cur, fam)))
        commands[str(fam)] = dels + reps + adds
    header = "routes proto %d table %s" % (proto, table)
    return dict(
        changed=bool(commands["4"] or commands["6"]),
        node=node, protocol=proto, table=table,
        added=added, replaced=replaced, removed=removed,
        routes=len(after_lines),
        commands=commands,
        diff=dict(before="".join(l + "\n" for l in sorted(before_lines, key=_sort_key)),
                  after="".join(l + "\n" for l in sorted(after_lines, key=_sort_key)),
                  before_header=header, after_header=header) if diff else None,
    )


def apply_routes(runner, change):
    for fam in (4, 6):
        run_ip_batch(runner, change["commands"][str(fam)], family=fam)
