# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The HTML report: a picture of the plan, the fabric and the verify matrix, in one self-contained page.

Pure functions over plain data (the registered plan ``podnet_plan``, a :class:`Fabric`, and optionally the judged
verify result ``podnet_verify_result``), standard library only, unit-tested without Ansible. The page holds inline
CSS and inline SVG and nothing else: no script, no font, no image, no address to fetch.

* the nodes in a grid, grouped by their underlay segment (their node networks), each with its name, node IPs and
  pod subnets of every family and their gateways;
* the fabric: the segment each group sits on, the routes between nodes (``l2_routes``), the router(s) of
  ``router``, Compute Engine for ``gce``, the shared segment the uplinks are enslaved into for ``l2_bridge``, the
  overlay for ``vxlan``;
* the verify matrices coloured by result, a failed cell's reason in its ``title`` (the browser's tooltip); above
  :data:`MATRIX_MAX` nodes a summary per check and the failing cells grouped by source and reason;
* the plan as a table, and the routes of small clusters (each node's routes to its peers: document.peer_routes).

The verify matrices (and the escaping of the whole page) are plugin_utils/report_matrix; this module re-exports
what callers use of it.

Elements a test (or a user's script) can find: every node is an element with ``class="node"`` and
``data-node="<name>"``; every matrix cell an element with ``class="cell ok"``/``"cell failed"``/``"cell skipped"``
and ``data-check``, ``data-family``, ``data-source``, ``data-target``.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import peer_routes
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError, natural_key
from ansible_collections.podnet.cluster.plugins.plugin_utils.report_matrix import (
    MATRIX_MAX,
    _clip,
    esc,
    matrix_cells,
    verify_html,
)

__all__ = ["FABRICS", "MATRIX_MAX", "ROUTES_MAX", "Fabric", "ReportError", "Router", "esc", "fabric_caption",
           "matrix_cells", "ordered_nodes", "plan_table_html", "render", "routes_html", "segments", "topology_svg",
           "verify_html"]

#: Above this many nodes the routes are counted, not listed.
ROUTES_MAX = 24
FABRICS = ("l2_routes", "router", "gce", "l2_bridge", "vxlan")
# Drawing sizes (px)
BOX_W = 236
GAP_X = 24
GAP_Y = 22
LINE = 15
MARGIN = 24
TRUNK_X = 12
MAX_COLUMNS = 5


class ReportError(ValueError):
    """Bad input data (the message says which)."""


@dataclass
class Router:
    name: str
    addresses: List[str] = field(default_factory=list)


@dataclass
class Fabric:
    """How pod subnets reach other nodes, as the inventory says (``podnet_fabric`` and what goes with it)."""

    kind: str = "l2_routes"
    routers: List[Router] = field(default_factory=list)
    bridge: str = "cbr0"
    gce_project: str = ""
    gce_network: str = ""
    vxlan_vni: Optional[int] = None
    vxlan_port: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in FABRICS:
            raise ReportError("podnet_fabric: %r is not one of %s" % (self.kind, ", ".join(FABRICS)))


def _family(text: str) -> int:
    return 6 if ":" in str(text) else 4


def _net(text: str) -> Optional[ipaddress._BaseNetwork]:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return None


def _addr(text: str) -> str:
    return str(text).split("/", 1)[0]


def ordered_nodes(plan: Mapping[str, Any]) -> List[str]:
    return sorted((str(n) for n in (plan.get("nodes") or {})), key=natural_key)


def segments(plan: Mapping[str, Any]) -> List[Tuple[str, List[str]]]:
    """(label, nodes) per underlay segment: nodes with the same node networks share one; in natural order."""
    groups: Dict[str, List[str]] = {}
    for name in ordered_nodes(plan):
        entry = plan["nodes"][name] or {}
        nets = sorted({str(n) for n in (_net(c) for c in entry.get("node_cidrs") or []) if n},
                      key=lambda t: (_family(t), t))
        label = ", ".join(nets) if nets else "node networks unknown"
        groups.setdefault(label, []).append(name)
    return sorted(groups.items(), key=lambda item: natural_key(item[1][0]))


# --------------------------------------------------------------------------- #
# the drawing of nodes and fabric
# --------------------------------------------------------------------------- #

def _node_lines(entry: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(css class, text) of the lines of a node's box after its name."""
    lines = []
    for ip in entry.get("node_ips") or []:
        lines.append(("nodeip", "node %s" % ip))
    gateways = {(_family(g)): _addr(g) for g in entry.get("gateways") or []}
    for cidr in entry.get("pod_cidrs") or []:
        fam = _family(cidr)
        gw = gateways.get(fam)
        lines.append(("pod%d" % fam, "pods %s%s" % (cidr, "  gw %s" % gw if gw and fam == 4 else "")))
    return lines


def _columns(count: int) -> int:
    if count <= 3:
        return max(1, count)
    return min(MAX_COLUMNS, max(3, int(math.ceil(math.sqrt(count * 1.5)))))


def fabric_caption(plan: Mapping[str, Any], fabric: Fabric) -> str:
    count = len(plan.get("nodes") or {})
    pods = sum(len((plan["nodes"][n] or {}).get("pod_cidrs") or []) for n in plan.get("nodes") or {})
    if fabric.kind == "l2_routes":
        return ("l2_routes: every node routes each peer's pod subnets via the peer's node IP on the shared segment "
                "(%d routes in all, %d per node)" % (pods * max(count - 1, 0) if count else 0,
                                                     pods - pods // max(count, 1) if count else 0))
    if fabric.kind == "router":
        names = ", ".join(r.name for r in fabric.routers) or "no host in podnet_routers"
        return ("router: %s route%s each node's pod subnets via the node (%d routes on each router); the nodes hold "
                "no peer routes" % (names, "s" if len(fabric.routers) == 1 else "", pods))
    if fabric.kind == "gce":
        return ("gce: one Compute Engine route per node pod subnet, next hop the node's instance (%d routes in "
                "network %s%s)" % (pods, fabric.gce_network or "?",
                                   ", project %s" % fabric.gce_project if fabric.gce_project else ""))
    if fabric.kind == "l2_bridge":
        return ("l2_bridge: each node's uplink is enslaved in %s; every pod is on-link on the shared segment, no "
                "routes" % fabric.bridge)
    return ("vxlan: a static VXLAN overlay%s%s between the node IPs; each peer's pod subnets are routed through "
            "it" % (" VNI %s" % fabric.vxlan_vni if fabric.vxlan_vni is not None else "",
                    ", UDP port %s" % fabric.vxlan_port if fabric.vxlan_port is not None else ""))


def topology_svg(plan: Mapping[str, Any], fabric: Fabric) -> str:
    """The nodes, grouped by segment, in a grid, and the fabric between them, as one inline SVG."""
    plan = plain(plan) or {}
    nodes = plan.get("nodes") or {}
    groups = segments(plan)
    count = len(nodes)
    cols = _columns(max((len(g) for _l, g in groups), default=1))
    lines_max = max((len(_node_lines(nodes[n] or {})) for n in nodes), default=1)
    box_h = 24 + LINE * lines_max
    left = MARGIN + TRUNK_X + 12
    width = left + cols * BOX_W + (cols - 1) * GAP_X + MARGIN + (28 if fabric.kind == "vxlan" else 0)
    out: List[str] = []
    y = MARGIN
    # the top: routers, Compute Engine, or nothing
    top_items: List[Tuple[str, List[str], str]] = []
    if fabric.kind == "router":
        for router in fabric.routers or [Router("(no router in podnet_routers)")]:
            top_items.append(("router", [router.name] + list(router.addresses), "router"))
    elif fabric.kind == "gce":
        top_items.append(("gce", ["Compute Engine", "network %s" % (fabric.gce_network or "?"),
                                  "%d routes, next hop the instance" % sum(
                                      len((nodes[n] or {}).get("pod_cidrs") or []) for n in nodes)], "cloud"))
    trunk_top = None
    if top_items:
        x = left
        item_h = 22 + LINE * max(len(t[1]) for t in top_items)
        for kind, texts, css in top_items:
            out.append('<g class="fabric-%s" data-fabric="%s">' % (esc(css), esc(kind)))
            out.append('<rect x="%d" y="%d" width="%d" height="%d" rx="%d" class="%s"/>'
                       % (x, y, BOX_W, item_h, 14 if css == "cloud" else 4, esc(css)))
            for i, text in enumerate(texts):
                out.append('<text x="%d" y="%d" class="%s">%s</text>'
                           % (x + 10, y + 18 + i * LINE, "name" if i == 0 else "small", esc(text)))
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="trunk"/>'
                       % (x + BOX_W // 2, y + item_h, x + BOX_W // 2, y + item_h + 14))
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="trunk"/>'
                       % (MARGIN + TRUNK_X, y + item_h + 14, x + BOX_W // 2, y + item_h + 14))
            out.append("</g>")
            x += BOX_W + GAP_X
        trunk_top = y + item_h + 14
        y += item_h + 34
    bus_ys: List[int] = []
    overlay_bottom = y
    overlay_x = width - MARGIN - 10
    for label, names in groups:
        rows = int(math.ceil(len(names) / float(cols)))
        bus_label = "segment %s" % label
        if fabric.kind == "l2_bridge":
            bus_label += " (shared L2: uplinks enslaved in %s, pods on-link)" % fabric.bridge
        out.append('<g class="segment" data-segment="%s">' % esc(label))
        out.append('<text x="%d" y="%d" class="seglabel">%s</text>' % (left, y + 10, esc(bus_label)))
        y += 18
        for row in range(rows):
            bus_y = y
            bus_ys.append(bus_y)
            row_names = names[row * cols:(row + 1) * cols]
            row_right = left + len(row_names) * (BOX_W + GAP_X) - GAP_X
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="bus%s"/>'
                       % (MARGIN + TRUNK_X, bus_y, row_right - BOX_W // 2,
                          bus_y, " shared" if fabric.kind == "l2_bridge" else ""))
            bottom = bus_y + 12 + box_h
            if fabric.kind == "vxlan":
                # the overlay under the row: each node's VTEP taps it, the right-hand trunk joins the rows
                out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="overlay"/>'
                           % (left + BOX_W // 2, bottom + 10, overlay_x, bottom + 10))
            for col, name in enumerate(row_names):
                x = left + col * (BOX_W + GAP_X)
                if fabric.kind == "vxlan":
                    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="overlay-link"/>'
                               % (x + BOX_W // 2, bottom, x + BOX_W // 2, bottom + 10))
                out.append(_node_box(name, nodes[name] or {}, x, bus_y + 12, box_h, fabric))
            overlay_bottom = bottom + 10
            y = bottom + GAP_Y + (16 if fabric.kind == "vxlan" else 0)
        out.append("</g>")
        y += 6
    # the trunk joining the segments (and the routers / Compute Engine on top)
    if bus_ys:
        top = trunk_top if trunk_top is not None else bus_ys[0]
        if top != bus_ys[-1]:
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="trunk"/>'
                       % (MARGIN + TRUNK_X, top, MARGIN + TRUNK_X, bus_ys[-1]))
    if fabric.kind == "vxlan" and bus_ys:
        out.append('<g class="fabric-overlay" data-fabric="vxlan">')
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="overlay"/>'
                   % (overlay_x, bus_ys[0] + 12, overlay_x, overlay_bottom))
        out.append('<text x="%d" y="%d" class="overlaylabel" transform="rotate(90 %d %d)">%s</text>'
                   % (overlay_x + 6, bus_ys[0] + 16, overlay_x + 6, bus_ys[0] + 16,
                      esc("VXLAN overlay%s" % (" VNI %s" % fabric.vxlan_vni if fabric.vxlan_vni is not None else ""))))
        out.append("</g>")
    height = y + MARGIN
    head = ('<svg class="topology" role="img" width="%d" height="%d" viewBox="0 0 %d %d">'
            '<title>%s</title>' % (width, height, width, height,
                                   esc("%d node%s, fabric %s" % (count, "" if count == 1 else "s", fabric.kind))))
    return head + "".join(out) + "</svg>"


def _node_box(name: str, entry: Mapping[str, Any], x: int, y: int, box_h: int, fabric: Fabric) -> str:
    parts = ['<g class="node" data-node="%s">' % esc(name)]
    tip = [name] + ["node IP %s" % a for a in entry.get("node_ips") or []] + [
        "pod subnet %s" % c for c in entry.get("pod_cidrs") or []] + [
        "gateway %s on %s" % (g, fabric.bridge) for g in entry.get("gateways") or []]
    parts.append("<title>%s</title>" % esc("\n".join(tip)))
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="drop"/>' % (x + BOX_W // 2, y - 12, x + BOX_W // 2, y))
    parts.append('<rect x="%d" y="%d" width="%d" height="%d" rx="6" class="box"/>' % (x, y, BOX_W, box_h))
    parts.append('<text x="%d" y="%d" class="name">%s</text>' % (x + 10, y + 17, esc(_clip(name, 30))))
    for i, (css, text) in enumerate(_node_lines(entry)):
        parts.append('<text x="%d" y="%d" class="%s">%s</text>' % (x + 10, y + 17 + LINE * (i + 1), css,
                                                                   esc(_clip(text, 38))))
    parts.append("</g>")
    return "".join(parts)


# --------------------------------------------------------------------------- #
# the page
# --------------------------------------------------------------------------- #

STYLE = """
body{font:14px/1.4 sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.facts{color:#445;margin:0 0 12px}.facts b{color:#1d2330}
.caption{margin:4px 0 8px;color:#334}
svg text{font-family:sans-serif;fill:#1d2330}
svg .box{fill:#f4f7fb;stroke:#5a6b86;stroke-width:1.2}
svg .router{fill:#fff4df;stroke:#b07414;stroke-width:1.4}
svg .cloud{fill:#e9f3ff;stroke:#2f6fb8;stroke-width:1.4}
svg .name{font-size:13px;font-weight:bold}
svg .small,svg .nodeip{font-size:11.5px}
svg .pod4{font-size:11.5px;fill:#1a5fb4}svg .pod6{font-size:11.5px;fill:#7b2fa0}
svg .seglabel{font-size:12px;fill:#5a6b86;font-style:italic}
svg .bus,svg .trunk{stroke:#5a6b86;stroke-width:3}svg .bus.shared{stroke:#2a8a55;stroke-width:5}
svg .drop{stroke:#5a6b86;stroke-width:1.5}
svg .overlay{stroke:#c2410c;stroke-width:3;stroke-dasharray:8 5}
svg .overlay-link{stroke:#c2410c;stroke-width:1.5}
svg .overlaylabel{font-size:12px;fill:#c2410c;font-weight:bold}
svg .rowlabel{font-size:11px;text-anchor:end}svg .collabel{font-size:11px}
.cell.ok{fill:#2e9d4f;background:#2e9d4f}.cell.failed{fill:#d0342c;background:#d0342c}
.cell.skipped{fill:#d5d9e0;background:#d5d9e0}
span.cell{color:#fff;padding:0 4px;border-radius:3px;margin:1px;display:inline-block;font-size:12px}
.chip{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle}
.chip.ok{background:#2e9d4f}.chip.failed{background:#d0342c}.chip.skipped{background:#d5d9e0}
.verdict.passed{color:#1e7a3c;font-weight:bold}.verdict.failed{color:#b3261e;font-weight:bold}
.matrices{display:flex;flex-wrap:wrap;gap:18px}
figure.check{margin:0;border:1px solid #d5d9e0;border-radius:6px;padding:8px}
figcaption{font-weight:bold;margin-bottom:4px}
.failgroups{margin:0;padding-left:18px}.reason{color:#b3261e}
span.src{background:#e4e8ef;padding:0 4px;border-radius:3px;margin:1px;display:inline-block;font-size:12px}
table.plan{border-collapse:collapse;font-size:13px}
table.plan td,table.plan th{border:1px solid #d5d9e0;padding:3px 8px;text-align:left}
table.plan th{background:#f4f7fb}
details{margin:8px 0}code{font-size:12px}
"""


def plan_table_html(plan: Mapping[str, Any]) -> str:
    nodes = plan.get("nodes") or {}
    out = ['<table class="plan"><tr><th>node</th><th>node IPs</th><th>pod subnets</th><th>gateways</th></tr>']
    for name in ordered_nodes(plan):
        entry = nodes[name] or {}
        out.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % tuple(
            esc(", ".join(str(v) for v in values)) for values in (
                [name], entry.get("node_ips") or [], entry.get("pod_cidrs") or [], entry.get("gateways") or [])))
    out.append("</table>")
    return "".join(out)


def routes_html(plan: Mapping[str, Any], fabric: Fabric) -> str:
    """The routes of the fabric, listed for small clusters (counted for large ones)."""
    names = ordered_nodes(plan)
    nodes = plan.get("nodes") or {}
    if fabric.kind not in ("l2_routes", "router", "gce", "vxlan"):
        return ""
    if fabric.kind in ("router", "gce"):
        routes = []
        for name in names:
            entry = nodes[name] or {}
            ips = {_family(a): _addr(a) for a in entry.get("node_ips") or []}
            for cidr in entry.get("pod_cidrs") or []:
                routes.append(("%s via %s" % (cidr, ips.get(_family(cidr), "?")), name))
        where = "on each router" if fabric.kind == "router" else "in the VPC network (next hop: the instance)"
        if len(names) > ROUTES_MAX:
            return "<p>%d routes %s, one per node pod subnet.</p>" % (len(routes), esc(where))
        body = "".join("<li><code>%s</code> (%s)</li>" % (esc(r), esc(n)) for r, n in routes)
        return "<details open><summary>%d routes %s</summary><ul>%s</ul></details>" % (len(routes), esc(where), body)
    if len(names) > ROUTES_MAX:
        return "<p>Every node holds a route to each peer's pod subnets (%d nodes).</p>" % len(names)
    try:
        table = [(peer, route.split(" peer ", 1)[0]) for peer, route in peer_routes(plan)]
    except PlanError as exc:
        raise ReportError(str(exc))
    table.sort(key=lambda item: natural_key(item[0]))
    out = ["<details><summary>%d routes between the nodes%s</summary>" % (
        len(table) * (len(names) - 1), " (through the overlay)" if fabric.kind == "vxlan" else "")]
    for name in names:
        out.append('<p><b>%s</b></p><ul class="routes" data-node="%s">' % (esc(name), esc(name)))
        for peer, route in table:
            if peer != name:
                out.append("<li><code>%s</code> (%s)</li>" % (esc(route), esc(peer)))
        out.append("</ul>")
    out.append("</details>")
    return "".join(out)


def render(plan: Mapping[str, Any], fabric: Optional[Fabric] = None, verify: Optional[Mapping[str, Any]] = None,
           title: str = "podnet.cluster") -> str:
    """The whole page: the drawing, the verify matrices (when ``verify`` is given), the plan table."""
    plan = plain(plan) or {}
    if not isinstance(plan.get("nodes"), dict):
        raise ReportError("the plan has no nodes mapping (is it podnet_plan?)")
    fabric = fabric or Fabric()
    names = ordered_nodes(plan)
    facts = [
        ("nodes", str(len(names))),
        ("cluster networks", ", ".join(plan.get("cluster_cidrs") or []) or "-"),
        ("service networks", ", ".join(plan.get("service_cidrs") or []) or "-"),
        ("node prefixes", ", ".join("/%s" % plan.get(k) for k in ("node_prefix_ipv4", "node_prefix_ipv6")
                                    if plan.get(k) is not None) or "-"),
        ("fabric", fabric.kind),
        ("bridge", fabric.bridge),
    ]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>%s</title>" % esc(title), "<style>%s</style></head><body>" % STYLE,
           "<h1>%s</h1>" % esc(title),
           '<p class="facts">%s</p>' % " &middot; ".join("%s <b>%s</b>" % (esc(k), esc(v)) for k, v in facts)]
    if verify is not None:
        out.append(verify_html(verify))
    out.append('<section class="network"><h2>Nodes and fabric</h2>')
    out.append('<p class="caption">%s</p>' % esc(fabric_caption(plan, fabric)))
    out.append(topology_svg(plan, fabric))
    out.append(routes_html(plan, fabric))
    out.append("</section>")
    out.append('<section class="plan"><h2>The plan</h2>%s</section>' % plan_table_html(plan))
    out.append("</body></html>\n")
    return "\n".join(out)
