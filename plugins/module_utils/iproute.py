# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Helpers around iproute2 for the podnet.cluster modules (target side).

Standard library only (Python 3.8+). The pure functions (parsing, the route index)
take already-decoded ``ip -json`` data so that they can be unit-tested
without a kernel; the ``run_*`` helpers take an engine runner (engine/runner.py) and raise
EngineError naming the command on error.
"""

from __future__ import annotations

import ipaddress
import json

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, read

# Route types of a unicast route in ``ip -N -json`` output (absent, numeric or by name).
UNICAST_TYPES = (None, "1", "unicast")


# --------------------------------------------------------------------------- #
# running ip (``runner``: an engine runner, see engine/runner.py)
# --------------------------------------------------------------------------- #

def ip_bin(runner):
    return runner.which("ip")


def run_ip_json(runner, args, numeric=True, tolerate=False, netns=None, ip=None):
    """Run ``ip [-N] -json ARGS`` and return the decoded list: the collection's one ``ip -json`` helper.

    ``args`` is a list of strings, e.g. ``["-4", "route", "show", "table", "main"]``.
    An empty answer (iproute2 prints nothing for an empty table) is ``[]``; with ``tolerate``
    a failing command is ``[]`` too (an IPv6 table on a node without IPv6). ``netns``: the path of a
    network namespace to run it in (``nsenter --net``); ``ip``: the ip command to run (default ``runner.which``).
    """
    cmd = [runner.which("nsenter"), "--net=%s" % netns, "--"] if netns else []
    cmd.append(ip or ip_bin(runner))
    if numeric:
        cmd.append("-N")
    cmd.append("-json")
    # family options must come before the object
    cmd.extend(args)
    rc, out, err = read(runner, cmd)
    if rc != 0:
        if tolerate:
            return []
        raise EngineError("command failed: %s: %s" % (" ".join(cmd), (err or out).strip()), rc=rc)
    out = out.strip()
    if not out:
        return []
    try:
        return json.loads(out)
    except ValueError as exc:
        raise EngineError("cannot parse the JSON output of %s: %s" % (" ".join(cmd), exc))


def run_ip_batch(runner, lines, family=None):
    """Run ``ip [-4|-6] -batch -`` with ``lines`` on stdin, in one process.

    Returns the lines. Raises EngineError naming the failing line (``ip -batch`` stops at the first error).
    """
    if not lines:
        return []
    cmd = [ip_bin(runner)]
    if family in (4, "4", "inet"):
        cmd.append("-4")
    elif family in (6, "6", "inet6"):
        cmd.append("-6")
    cmd.extend(["-batch", "-"])
    rc, out, err = runner.run(cmd, data="\n".join(lines) + "\n")
    if rc != 0:
        raise EngineError("%s failed (the batch stops at the first failing line): %s"
                          % (" ".join(cmd), (err or out).strip()), rc=rc, batch=list(lines))
    return lines


# --------------------------------------------------------------------------- #
# links and addresses
# --------------------------------------------------------------------------- #

def get_link(runner, name):
    """``ip -d -json link show dev NAME`` or ``None`` when it does not exist."""
    cmd = [ip_bin(runner), "-d", "-json", "link", "show", "dev", name]
    rc, out, err = read(runner, cmd)
    if rc != 0:
        if "does not exist" in (err or "") or "Cannot find device" in (err or ""):
            return None
        raise EngineError("command failed: %s: %s" % (" ".join(cmd), (err or out).strip()))
    data = json.loads(out) if out.strip() else []
    return data[0] if data else None


def link_kind(link):
    """The ``info_kind`` of a detailed link (``bridge``, ``veth``...) or ``None``."""
    return ((link or {}).get("linkinfo") or {}).get("info_kind")


def find_link_with_address(addr_data, address):
    """Return the ``ip -json addr show`` entry of the link holding ``address``.

    ``address`` is an IP (string or ipaddress object). ``None`` if no link holds it.
    """
    ip = ipaddress.ip_address(str(address).split("/", maxsplit=1)[0])
    for entry in addr_data:
        for info in entry.get("addr_info", []):
            if info.get("family") not in ("inet", "inet6"):
                continue
            try:
                if ipaddress.ip_address(info["local"]) == ip:
                    return entry
            except (KeyError, ValueError):
                continue
    return None


# --------------------------------------------------------------------------- #
# routes
# --------------------------------------------------------------------------- #

def route_dst(route, family):
    """The destination of an ``ip -json route`` entry as an ip_network."""
    dst = route.get("dst", "default")
    if dst == "default":
        return ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
    return ipaddress.ip_network(dst, strict=False)


def route_protocol(route):
    """Protocol as an int when numeric (``ip -N``), else the name, else ``None``."""
    proto = route.get("protocol")
    if proto is None:
        return None
    try:
        return int(proto)
    except (TypeError, ValueError):
        return proto


def route_is_unicast(route):
    return route.get("type") in UNICAST_TYPES


def route_metric(route):
    """Metric as printed by ``ip -json`` (absent means 0; IPv6 routes always carry one)."""
    metric = route.get("metric")
    if metric is None:
        return 0
    return int(metric)


def route_is_onlink(route):
    """True when a route is a directly connected (device, no gateway) unicast route."""
    if route is None or not route_is_unicast(route):
        return False
    if route.get("gateway") or route.get("via") or route.get("nexthops"):
        return False
    return bool(route.get("dev"))


def describe_route(route, family=None):
    """Human-readable one-line form of a decoded route, for messages and diffs."""
    parts = []
    rtype = route.get("type")
    if rtype not in UNICAST_TYPES:
        parts.append(str(rtype))
    parts.append(route.get("dst", "default"))
    if route.get("gateway"):
        parts.extend(["via", route["gateway"]])
    if route.get("dev"):
        parts.extend(["dev", route["dev"]])
    if route.get("nexthops"):
        for nh in route["nexthops"]:
            parts.append("nexthop")
            if nh.get("gateway"):
                parts.extend(["via", nh["gateway"]])
            if nh.get("dev"):
                parts.extend(["dev", nh["dev"]])
    if route.get("protocol") is not None:
        parts.extend(["proto", str(route["protocol"])])
    if route.get("metric") is not None:
        parts.extend(["metric", str(route["metric"])])
    return " ".join(parts)


class RouteIndex(object):
    """Exact-match and longest-prefix-match index over one family of a decoded table.

    Built once (O(n)); each lookup costs one dict probe per prefix length present
    in the table (integer masks, no object construction), so thousands of lookups
    over a table of thousands of routes stay fast.
    """

    def __init__(self, routes, family, exclude_protocol=None):
        self.family = family
        self.bits = 32 if family == 4 else 128
        self.by_prefix = {}
        for route in routes:
            if exclude_protocol is not None and route_protocol(route) == exclude_protocol:
                continue
            try:
                net = route_dst(route, family)
            except ValueError:
                continue
            if net.version != family:
                continue
            key = int(net.network_address)
            self.by_prefix.setdefault(net.prefixlen, {}).setdefault(key, []).append(route)
        self.prefixes = sorted(self.by_prefix, reverse=True)
        full = (1 << self.bits) - 1
        self.masks = {plen: full ^ ((1 << (self.bits - plen)) - 1) for plen in self.prefixes}

    def exact_int(self, network, prefixlen):
        """Routes whose destination is exactly the network given as an integer of this index's family
        and its prefix length."""
        return list(self.by_prefix.get(prefixlen, {}).get(network, []))

    def lookup_int(self, ip):
        """All routes of the longest prefix holding ``ip`` (an integer of this index's family) with the
        lowest metric (usually one)."""
        for plen in self.prefixes:
            routes = self.by_prefix[plen].get(ip & self.masks[plen])
            if routes:
                low = min(route_metric(r) for r in routes)
                return [r for r in routes if route_metric(r) == low]
        return []
