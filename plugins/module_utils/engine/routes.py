# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The routes engine: every pod route of one node (or router), both families, in one pass.

Our routes carry the route protocol ``protocol`` (158 by default); only they are ever replaced or
deleted. Every gateway must be on-link (its best route in the main table, ignoring ours, is directly
connected); a wanted destination already routed by somebody else is an error. Standard library only.
"""

from __future__ import annotations

import os
import socket

from ansible_collections.podnet.cluster.plugins.module_utils.engine.addrs import (
    _FAMILIES,
    parse_address,
    parse_network,
)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.text import limit, network_problem
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    RouteIndex,
    describe_route,
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
    return limit(items, MAX_LISTED)


def parse_route(item, index):
    """(dst text, via text, peer) of a route given as a dict or as ``"DST via VIA [peer NAME]"``."""
    if isinstance(item, dict):
        return str(item.get("dst") or "").strip(), str(item.get("via") or "").strip(), item.get("peer")
    fields = str(item).split()
    if len(fields) in (3, 5) and fields[1] == "via" and (len(fields) == 3 or fields[3] == "peer"):
        return fields[0], fields[2], fields[4] if len(fields) == 5 else None
    raise EngineError("route %d %r is not 'DST via GATEWAY [peer NAME]' nor a dict with dst and via" % (index + 1, item))


def expand_routes(routes):
    """The routes one by one: a string of several lines holds one route per line (blank lines ignored)."""
    if isinstance(routes, str):
        routes = [routes]
    for item in routes or []:
        if isinstance(item, str) and "\n" in item:
            for line in item.splitlines():
                if line.strip():
                    yield line
        else:
            yield item


def _route_key(route, family):
    """(int, prefix length) of an ``ip -json route`` entry's destination (ValueError if it is not one)."""
    dst = route.get("dst", "default")
    if dst == "default":
        return 0, 0
    fam, num, length, _unused = parse_network(dst, strict=False)
    if fam != family:
        raise ValueError("%s is not IPv%d" % (dst, family))
    return num, length


def desired_routes(routes, node):
    """{family: {(int, prefix length): {dst, via, via_int, peer}}} of the wanted routes (canonical texts), validated.

    EngineError lists every problem.
    """
    desired = {4: {}, 6: {}}
    problems = []
    for idx, item in enumerate(expand_routes(routes)):
        text, via_text, peer = parse_route(item, idx)
        label = peer or "route %d" % (idx + 1)
        try:
            fam, num, length, dst = parse_network(text, strict=True)
        except ValueError:
            problems.append("peer %s: %s" % (label, network_problem(text, "dst") or "dst %r is not a network" % text))
            continue
        try:
            via_fam, via_num, via = parse_address(via_text)
        except ValueError as exc:
            problems.append("peer %s: via %r is not an IP address: %s" % (label, via_text, exc))
            continue
        if via_fam != fam:
            problems.append("peer %s: via %s is IPv%d but dst %s is IPv%d" % (label, via, via_fam, dst, fam))
            continue
        bits = _FAMILIES[fam][1]
        if (via_num >> (bits - length)) == (num >> (bits - length)):
            problems.append("peer %s: via %s lies inside its own destination %s" % (label, via, dst))
            continue
        key = (num, length)
        if key in desired[fam]:
            other = desired[fam][key]
            problems.append("dst %s is wanted twice: via %s (peer %s) and via %s (peer %s)"
                            % (dst, other["via"], other["peer"], via, label))
            continue
        desired[fam][key] = dict(dst=dst, via=via, via_int=via_num, peer=peer)
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
        fam, num, length, _unused = parse_network(head, strict=False)
        return (fam, num, length, line)
    except ValueError:
        return (9, 0, 0, line)


def route_ident(family, route):
    """``"FAMILY DST"`` of an ``ip -json`` route: how routes of our protocol that are not ours are recorded."""
    return "%d %s" % (family, route.get("dst", "default"))


def plan_routes(runner, routes=(), node=None, protocol=158, table="main", state="present", diff=True,
                offlink="fail", keep=(), skip_devs=()):
    """The whole change of our routes; raises EngineError (off-link gateway, foreign route...) before any write.

    ``diff`` False skips the before/after text (sorting thousands of lines costs more than the reconcile).
    ``offlink`` ``skip`` (the boot-time restore): a route whose gateway is not on-link (yet) is left out and
    named in ``skipped`` instead of failing the whole change; a route of ours to that destination is kept.
    ``keep``: routes of the protocol that are not podnet.cluster's (``"FAMILY DST"``, as :func:`route_ident`
    names them; found at the first converge) are never removed.
    Routes of our protocol on ``skip_devs`` (the overlay's devices) belong to another part and are left alone.
    """
    keep = set(keep or ())
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
                    local_ips.add(parse_address(info["local"])[:2])
                except (KeyError, ValueError):
                    pass

    offlink_mode = offlink
    offlink, conflicts, dev_of, skipped_keys = [], [], {}, set()
    for fam in (4, 6):
        if not desired[fam]:
            continue
        lpm = RouteIndex(mains[fam], fam, exclude_protocol=proto)
        # the table's routes that are not ours, by destination (the main table's index serves both)
        foreign = lpm if tables[fam] is mains[fam] else RouteIndex(tables[fam], fam, exclude_protocol=proto)
        cache = {}
        for key, want in desired[fam].items():
            via, via_int = want["via"], want["via_int"]
            peer = want["peer"] or "(unnamed peer)"
            if (fam, via_int) in local_ips:
                offlink.append("peer %s: via %s is an address of this node %s itself" % (peer, via, node))
                skipped_keys.add((fam, key))
                continue
            best = cache.get(via_int)
            if best is None:
                best = cache[via_int] = lpm.lookup_int(via_int)
            if not best:
                offlink.append("peer %s at %s: no route at all to it in the main table" % (peer, via))
            elif not all(route_is_onlink(r) for r in best):
                offlink.append("peer %s at %s: its best route in the main table is '%s', not a directly connected one"
                               % (peer, via, describe_route(best[0])))
            elif len({r.get("dev") for r in best}) > 1:
                offlink.append("peer %s at %s: on-link through more than one device (%s); cannot choose"
                               % (peer, via, ", ".join(sorted({r.get("dev") for r in best}))))
            else:
                dev_of[(fam, key)] = best[0]["dev"]
            if (fam, key) not in dev_of:
                skipped_keys.add((fam, key))
            for other in foreign.exact_int(*key):
                conflicts.append("dst %s (peer %s): table %s already has '%s' with protocol %s"
                                 % (want["dst"], peer, table, describe_route({k: v for k, v in other.items()
                                                                              if k != "protocol"}),
                                    proto_text(route_protocol(other))))
    skipped = []
    if offlink and offlink_mode == "skip":
        skipped, offlink = offlink, []
        desired = {fam: {k: v for k, v in wanted.items() if (fam, k) not in skipped_keys}
                   for fam, wanted in desired.items()}
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
    count = 0
    for fam in (4, 6):
        ours = [r for r in tables[fam] if route_protocol(r) == proto and r.get("dev") not in skip_devs]
        if diff:
            before_lines.extend(_existing_line(r, fam) for r in ours)
        by_dst, stale = {}, []
        wanted = desired[fam]
        default_metric = DEFAULT_METRIC[fam]
        # iproute2 prints canonical text, as the wanted destinations are (a /32 or /128 without its length):
        # the same text is the same network, anything else is parsed
        by_text = {want["dst"]: key for key, want in wanted.items()}
        by_text.update({want["dst"].rsplit("/", 1)[0]: key for key, want in wanted.items()
                        if key[1] == _FAMILIES[fam][1]})
        for r in ours:
            key = by_text.get(r.get("dst"))
            if key is None:
                try:
                    key = _route_key(r, fam)
                except ValueError:
                    stale.append(r)
                    continue
            if key in wanted and key not in by_dst and route_is_unicast(r) and route_metric(r) == default_metric:
                by_dst[key] = r
            elif (fam, key) in skipped_keys or route_ident(fam, r) in keep:
                continue        # left as it is: its gateway is not on-link now, or it is not ours
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
                                route=_existing_line(r, fam), ident=route_ident(fam, r)))
        count += len(wanted)
        for key in sorted(wanted):
            want = wanted[key]
            dev = dev_of[(fam, key)]
            dst, via = want["dst"], want["via"]
            if diff:
                after_lines.append(_line(dst, via, dev))
            cur = by_dst.get(key)
            if cur is None:
                adds.append("route add %s via %s dev %s proto %d table %s" % (dst, via, dev, proto, table))
                added.append(_line(dst, via, dev))
                continue
            gateway = cur.get("gateway")
            if cur.get("dev") == dev and not cur.get("nexthops") and gateway == via:
                continue    # the kernel prints canonical text, and ``via`` is canonical: the same route
            same = (not cur.get("nexthops") and gateway is not None
                    and parse_address(gateway)[:2] == (fam, want["via_int"]) and cur.get("dev") == dev)
            if not same:
                reps.append("route replace %s via %s dev %s proto %d table %s" % (dst, via, dev, proto, table))
                replaced.append(dict(dst=dst, via=via, dev=dev, peer=want["peer"],
                                     old=_existing_line(cur, fam)))
        commands[str(fam)] = dels + reps + adds
    header = "routes proto %d table %s" % (proto, table)
    return dict(
        changed=bool(commands["4"] or commands["6"]),
        node=node, protocol=proto, table=table,
        added=added, replaced=replaced, removed=removed, skipped=skipped,
        routes=count,
        commands=commands,
        diff=dict(before="".join(l + "\n" for l in sorted(before_lines, key=_sort_key)),
                  after="".join(l + "\n" for l in sorted(after_lines, key=_sort_key)),
                  before_header=header, after_header=header) if diff else None,
    )


def apply_routes(runner, change):
    for fam in (4, 6):
        run_ip_batch(runner, change["commands"][str(fam)], family=fam)
