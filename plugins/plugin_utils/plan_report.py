# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The plan as a person reads it (a table) and as other tools read it (a JSON document). Pure functions.

Input: the registered plan (the result of the action podnet.cluster.plan: ``cluster_cidrs``, ``node_prefix_ipv4``,
``node_prefix_ipv6``, ``nodes``, and what this run changes: ``added``, ``released``, ``absent``), the fabric and the
routers.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import natural_key

EXPORT_VERSION = 1


def _family(cidr: str) -> int:
    return 6 if ":" in cidr else 4


def row_marks(plan: Mapping[str, Any]) -> Dict[str, str]:
    """{node: "new" | "changed"} for the nodes this plan gives blocks they did not hold in the state file."""
    added = plan.get("added") or {}
    released = plan.get("released") or {}
    nodes = plan.get("nodes") or {}
    marks: Dict[str, str] = {}
    for name in nodes:
        if name in released:
            marks[name] = "changed"
        elif name in added:
            mine = list((nodes[name] or {}).get("pod_cidrs") or [])
            marks[name] = "new" if set(mine) <= set(added[name]) else "changed"
    return marks


def capacity(plan: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Per family of the cluster: its network, node prefix, blocks in all, blocks used (departed nodes included)."""
    out = []
    nodes = plan.get("nodes") or {}
    absent = plan.get("absent") or {}
    for cluster in plan.get("cluster_cidrs") or []:
        net = ipaddress.ip_network(cluster)
        family = net.version
        prefix = plan.get("node_prefix_ipv%d" % family)
        if prefix is None:
            continue
        total = 2 ** (int(prefix) - net.prefixlen)
        held = [c for n in nodes.values() for c in (n or {}).get("pod_cidrs") or [] if _family(c) == family]
        departed = [c for cidrs in absent.values() for c in cidrs or []
                    if _family(c) == family and ipaddress.ip_network(c).subnet_of(net)]
        out.append({"family": "IPv%d" % family, "cluster_cidr": cluster, "node_prefix": int(prefix), "total": total,
                    "used": len(held) + len(departed), "departed": len(departed)})
    return out


def export(plan: Mapping[str, Any], fabric: str, routers: Sequence[str]) -> Dict[str, Any]:
    """The plan for other tools (JSON): every node's blocks, the capacity, the fabric and routers, what changes."""
    nodes = plan.get("nodes") or {}
    marks = row_marks(plan)
    return {
        "version": EXPORT_VERSION,
        "fabric": fabric,
        "routers": list(routers),
        "cluster_cidrs": list(plan.get("cluster_cidrs") or []),
        "service_cidrs": list(plan.get("service_cidrs") or []),
        "node_prefix_ipv4": plan.get("node_prefix_ipv4"),
        "node_prefix_ipv6": plan.get("node_prefix_ipv6"),
        "node_cidrs": list(plan.get("node_cidrs") or []),
        "capacity": capacity(plan),
        "nodes": {name: dict(nodes[name], status=marks.get(name, "unchanged"))
                  for name in sorted(nodes, key=natural_key)},
        "departed": {name: list(c) for name, c in sorted((plan.get("absent") or {}).items())},
        "released": {name: list(c) for name, c in sorted((plan.get("released") or {}).items())},
        "state_file": plan.get("state_file"),
    }


def table(plan: Mapping[str, Any], fabric: str, routers: Sequence[str], export_path: Optional[str] = None) -> str:
    """The plan as text: the fabric and routers, each family's capacity, one row per node and family (new and
    changed rows marked), departed nodes that still hold blocks."""
    lines = ["podnet.cluster plan: fabric %s%s" % (fabric, "; routers: %s" % ", ".join(routers) if routers else
                                                   " (no routers in the inventory)" if fabric == "router" else "")]
    for cap in capacity(plan):
        lines.append("  %s %s: %d of %d /%d blocks used%s" % (
            cap["family"], cap["cluster_cidr"], cap["used"], cap["total"], cap["node_prefix"],
            " (%d by departed nodes)" % cap["departed"] if cap["departed"] else ""))
    nodes = plan.get("nodes") or {}
    marks = row_marks(plan)
    rows = [("", "NODE", "NODE IP", "POD CIDR", "GATEWAY", "")]
    for name in sorted(nodes, key=natural_key):
        entry = nodes[name] or {}
        cidrs = list(entry.get("pod_cidrs") or [])
        gateways = list(entry.get("gateways") or [])
        ips = list(entry.get("node_ips") or [])
        mark = marks.get(name, "")
        for i in range(max(len(cidrs), 1)):
            rows.append(("+" if mark == "new" and i == 0 else "~" if mark == "changed" and i == 0 else "",
                         name if i == 0 else "",
                         ips[i] if i < len(ips) else "",
                         cidrs[i] if i < len(cidrs) else "",
                         gateways[i] if i < len(gateways) else "",
                         "(%s)" % mark if mark and i == 0 else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += [("  ".join(c.ljust(w) for c, w in zip(row, widths))).rstrip() for row in rows]
    absent = plan.get("absent") or {}
    if absent:
        lines.append("Departed nodes still holding blocks (release them with podnet_release_nodes):")
        for name in sorted(absent, key=natural_key):
            lines.append("  %s  %s" % (name, ", ".join(absent[name])))
    gone = {n: c for n, c in (plan.get("released") or {}).items() if n not in nodes}
    if gone:
        lines.append("Released by this plan (the nodes left the inventory):")
        for name in sorted(gone, key=natural_key):
            lines.append("  %s  %s" % (name, ", ".join(gone[name])))
    if marks:
        lines.append("+ new node, ~ changed blocks: podnet.cluster.site records and applies them")
    if export_path:
        lines.append("The plan as JSON: %s" % export_path)
    return "\n".join(lines)
