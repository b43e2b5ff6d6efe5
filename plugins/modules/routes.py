#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: routes
short_description: Reconcile all of a node's routes to the other nodes' pod subnets in one call
description:
  - Makes the set of routes marked with the collection's route protocol (I(protocol), default C(158)) in I(table)
    exactly I(routes), for IPv4 and IPv6 at once; one task per node, never one task per route.
  - Reads the table with C(ip -json), computes what to add, what to replace (same destination, wrong gateway or
    device) and what to delete (routes with our protocol that are no longer wanted, for example to a removed
    node), then writes with one C(ip -4 -batch -) and one C(ip -6 -batch -). Routes with any other protocol are
    never replaced or deleted.
  - Before any change every gateway (C(via)) must be on-link from this node, that is, its longest-prefix match in
    the main table (ignoring our own routes) must be a directly connected route (a device, no gateway). The route
    then uses that device. A gateway that is not on-link means the nodes are not L2-adjacent, and host-gw style
    routing cannot work; the error names this node, the peer and the address, and suggests a routed fabric.
  - A wanted destination that already has a route with another protocol in I(table) is an error naming that route
    (the collection never overwrites foreign routes).
  - Fast for thousands of routes (one read per family, indexed lookups, one batch per family).
version_added: 0.1.0
author:
  - podnet.cluster maintainers
requirements:
  - iproute2 (C(ip)) on the managed node
options:
  routes:
    description:
      - Every pod route this node must have. Ignored when I(state=absent).
    type: list
    elements: dict
    default: []
    suboptions:
      dst:
        description: Destination network (a peer's pod CIDR), for example C(10.244.2.0/24) or C(fd00:10:244:2::/64).
        type: str
        required: true
      via:
        description: Gateway, the peer node's address on a link shared with this node. Same family as I(dst).
        type: str
        required: true
      peer:
        description: Name of the peer node, for messages.
        type: str
  node:
    description:
      - Name of this node, for messages. Defaults to the host name.
    type: str
  protocol:
    description:
      - Route protocol number that marks the collection's routes (C(podnet_route_protocol)). 5 to 255; 0-4 are
        the kernel's own (unspec, redirect, kernel, boot, static).
    type: int
    default: 158
  table:
    description:
      - Routing table, by name or number. The on-link check always uses the main table.
    type: str
    default: main
  state:
    description:
      - C(present) makes our routes exactly I(routes); C(absent) deletes every route with I(protocol) in I(table).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Routes to every other node's pod subnets
  podnet.cluster.routes:
    node: "{{ inventory_hostname }}"
    routes:
      - {dst: 10.244.2.0/24, via: 192.168.10.12, peer: node2}
      - {dst: "fd00:10:244:2::/64", via: "fd00:192:168:10::12", peer: node2}
      - {dst: 10.244.3.0/24, via: 192.168.10.13, peer: node3}

- name: Remove every pod route of the collection
  podnet.cluster.routes:
    state: absent
"""

RETURN = r"""
added:
  description: Routes added.
  returned: always
  type: list
  elements: dict
  sample: [{dst: 10.244.2.0/24, via: 192.168.10.12, dev: eth0, peer: node2}]
replaced:
  description: Routes replaced because the gateway, device, metric or type differed; C(old) is the route before.
  returned: always
  type: list
  elements: dict
  sample: [{dst: 10.244.3.0/24, via: 192.168.10.13, dev: eth0, peer: node3, old: "10.244.3.0/24 via 192.168.10.99 dev eth0"}]
removed:
  description: Stale routes with our protocol deleted.
  returned: always
  type: list
  elements: dict
  sample: [{dst: 10.244.9.0/24, via: 192.168.10.19, dev: eth0}]
routes:
  description: Number of routes with our protocol after the run (as predicted in check mode).
  returned: always
  type: int
commands:
  description: The batch lines per family, given (or in check mode, that would be given) to C(ip -4 -batch -) and C(ip -6 -batch -).
  returned: always
  type: dict
  sample: {"4": ["route add 10.244.2.0/24 via 192.168.10.12 dev eth0 proto 158 table main"], "6": []}
diff:
  description: Our routes before and after, one sorted line per route (C(DST via GW dev DEV)).
  returned: always
  type: dict
"""

import ipaddress
import json
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    RouteIndex,
    describe_route,
    ip_bin,
    route_dst,
    route_is_onlink,
    route_is_unicast,
    route_metric,
    route_protocol,
    run_ip_batch,
    run_ip_json,
)

PROTO_NAMES = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra", 10: "mrt",
               11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp", 18: "keepalived",
               42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp"}
DEFAULT_METRIC = {4: 0, 6: 1024}
MAX_LISTED = 10


def _proto_text(proto):
    if isinstance(proto, int) and proto in PROTO_NAMES:
        return "%s (%d)" % (PROTO_NAMES[proto], proto)
    return str(proto)


def _read_table(module, family, table, tolerate):
    cmd_args = ["-%d" % family, "route", "show", "table", table]
    if tolerate:
        cmd = [ip_bin(module), "-N", "-json"] + cmd_args
        rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
        if rc != 0:
            return []
        return json.loads(out) if out.strip() else []
    return run_ip_json(module, cmd_args)


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


def _limit(items):
    text = "; ".join(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        text += "; ... and %d more" % (len(items) - MAX_LISTED)
    return text


def main():
    module = AnsibleModule(
        argument_spec=dict(
            routes=dict(type="list", elements="dict", default=[], options=dict(
                dst=dict(type="str", required=True),
                via=dict(type="str", required=True),
                peer=dict(type="str"),
            )),
            node=dict(type="str"),
            protocol=dict(type="int", default=158),
            table=dict(type="str", default="main"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    node = p["node"] or socket.gethostname()
    proto = p["protocol"]
    table = str(p["table"]).strip()
    state = p["state"]
    if not 5 <= proto <= 255:
        module.fail_json(msg="protocol %d is outside 5..255 (0-4 are the kernel's own protocols)" % proto)
    if not table or any(c.isspace() for c in table):
        module.fail_json(msg="table %r is not a table name or number" % table)

    # ---- desired state, validated
    desired = {4: {}, 6: {}}   # family -> {network: dict(dst, via, peer)}
    problems = []
    if state == "present":
        for idx, route in enumerate(p["routes"] or []):
            peer = route.get("peer") or "route %d" % (idx + 1)
            text = (route["dst"] or "").strip()
            try:
                dst = ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                try:
                    net = ipaddress.ip_network(text, strict=False)
                    problems.append("peer %s: dst %s has host bits set (the network is %s)" % (peer, text, net))
                except ValueError:
                    problems.append("peer %s: dst %r is not a network: %s" % (peer, text, exc))
                continue
            try:
                via = ipaddress.ip_address(route["via"].strip())
            except ValueError as exc:
                problems.append("peer %s: via %r is not an IP address: %s" % (peer, route["via"], exc))
                continue
            if via.version != dst.version:
                problems.append("peer %s: via %s is IPv%d but dst %s is IPv%d" % (peer, via, via.version, dst, dst.version))
                continue
            if via in dst:
                problems.append("peer %s: via %s lies inside its own destination %s" % (peer, via, dst))
                continue
            if dst in desired[dst.version]:
                other = desired[dst.version][dst]
                problems.append("dst %s is wanted twice: via %s (peer %s) and via %s (peer %s)"
                                % (dst, other["via"], other["peer"], via, peer))
                continue
            desired[dst.version][dst] = dict(dst=dst, via=via, peer=route.get("peer"))
        if problems:
            module.fail_json(msg="node %s: invalid routes: %s" % (node, _limit(problems)), problems=problems)

    # ---- current state
    mains = {}
    tables = {}
    for fam in (4, 6):
        tolerate = fam == 6 and not desired[6]
        mains[fam] = _read_table(module, fam, "main", tolerate)
        tables[fam] = mains[fam] if table in ("main", "254") else _read_table(module, fam, table, tolerate)
    local_ips = set()
    if desired[4] or desired[6]:
        for entry in run_ip_json(module, ["addr", "show"], numeric=False):
            for info in entry.get("addr_info", []):
                try:
                    local_ips.add(ipaddress.ip_address(info["local"]))
                except (KeyError, ValueError):
                    pass

    # ---- on-link check and foreign-route check for every wanted route, before any write
    offlink = []
    conflicts = []
    dev_of = {}
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
                                        _proto_text(route_protocol(other))))
    if offlink:
        module.fail_json(
            msg="node %s cannot reach %d peer gateway(s) on-link: %s. Routes to pod subnets via a node address "
                "(host-gw) need nodes that share a link (L2-adjacent); for nodes behind a router set podnet_fabric "
                "to a routed fabric (router or gce) instead." % (node, len(offlink), _limit(offlink)),
            not_onlink=offlink)
    if conflicts:
        module.fail_json(
            msg="node %s: %d wanted pod route(s) collide with routes podnet.cluster does not own (protocol other "
                "than %d); they are never overwritten: %s. Remove or renumber the foreign route(s)."
                % (node, len(conflicts), proto, _limit(conflicts)),
            conflicts=conflicts)

    # ---- diff
    commands = {"4": [], "6": []}
    added, replaced, removed = [], [], []
    before_lines, after_lines = [], []
    for fam in (4, 6):
        ours = [r for r in tables[fam] if route_protocol(r) == proto]
        before_lines.extend(_existing_line(r, fam) for r in ours)
        by_dst = {}
        stale = []
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
            item = dict(dst=str(dst), via=str(via), dev=dev, peer=want["peer"])
            cur = by_dst.get(dst)
            if cur is None:
                adds.append("route add " + spec)
                added.append(item)
                continue
            same = (not cur.get("nexthops") and cur.get("gateway") is not None
                    and ipaddress.ip_address(cur["gateway"]) == via and cur.get("dev") == dev)
            if not same:
                reps.append("route replace " + spec)
                item["old"] = _existing_line(cur, fam)
                replaced.append(item)
        commands[str(fam)] = dels + reps + adds

    changed = bool(commands["4"] or commands["6"])
    if changed and not module.check_mode:
        for fam in (4, 6):
            run_ip_batch(module, commands[str(fam)], family=fam)

    module.exit_json(
        changed=changed,
        node=node,
        protocol=proto,
        table=table,
        added=added,
        replaced=replaced,
        removed=removed,
        routes=len(after_lines),
        commands=commands,
        diff=dict(before="".join(l + "\n" for l in sorted(before_lines, key=_sort_key)),
                  after="".join(l + "\n" for l in sorted(after_lines, key=_sort_key)),
                  before_header="routes proto %d table %s" % (proto, table),
                  after_header="routes proto %d table %s" % (proto, table)),
    )


if __name__ == "__main__":
    main()
