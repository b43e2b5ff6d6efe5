# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The verify matrix, sampled: each node probes a few peers instead of all of them (chosen per segment, the same
for the same seed), and the cells one node runs as arguments of the module ``podnet.cluster.probe``. The whole
matrix is plugin_utils/verify.py's. Pure functions over plain data."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import natural_key
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify import (
    VerifyError,
    address_of,
    cells,
    matrix_inputs,
    network_of,
    ordered,
    pod_ips,
)

# --------------------------------------------------------------------------- #
# sampling: each node probes a few peers instead of all of them
# --------------------------------------------------------------------------- #

#: Up to this many nodes the full matrix is the default (podnet_verify_peers: auto); above it, sampling.
FULL_MATRIX_MAX = 30
#: Peers per node when sampling by default (podnet_verify_peers: auto above FULL_MATRIX_MAX nodes).
DEFAULT_PEERS = 10
#: Above this many nodes the report shows a summary per check and family and the failing cells only.
REPORT_MATRIX_MAX = 30


def segment_of(plan_node: Mapping[str, Any]) -> str:
    """The underlay segment of a node: its node networks (nodes on one segment reach each other on-link)."""
    nets = sorted(str(n) for n in (network_of(c) for c in plan_node.get("node_cidrs") or []) if n)
    return ",".join(nets)


def peer_count(setting: Any, count: int) -> Tuple[Optional[int], str]:
    """(peers per node or None for the full matrix, why) from ``podnet_verify_peers`` and the node count.

    ``auto`` (or empty): the full matrix up to :data:`FULL_MATRIX_MAX` nodes, :data:`DEFAULT_PEERS` above;
    ``all``: the full matrix; a whole number k >= 1: k peers (the full matrix when k >= nodes - 1).
    """
    text = "" if setting is None else str(setting).strip().lower()
    if text in ("", "auto", "none"):
        if count <= FULL_MATRIX_MAX:
            return None, "full matrix (%d nodes, at most %d: podnet_verify_peers auto)" % (count, FULL_MATRIX_MAX)
        return DEFAULT_PEERS, ("sampled: %d peers per node (%d nodes, more than %d: podnet_verify_peers auto)"
                               % (DEFAULT_PEERS, count, FULL_MATRIX_MAX))
    if text == "all":
        return None, "full matrix (podnet_verify_peers all)"
    try:
        value = int(text)
    except ValueError:
        raise VerifyError("podnet_verify_peers: %r is not auto, all or a whole number of peers" % (setting,))
    if value < 1:
        raise VerifyError("podnet_verify_peers: %d; give at least 1 peer per node (or all, or auto)" % value)
    if value >= count - 1:
        return None, "full matrix (podnet_verify_peers %d >= the other %d nodes)" % (value, count - 1)
    return value, "sampled: %d peers per node (podnet_verify_peers %d)" % (value, value)


def _seed_int(seed: Any) -> int:
    try:
        return int(str(seed).strip())
    except (TypeError, ValueError):
        raise VerifyError("podnet_verify_seed: %r is not a whole number" % (seed,))


def select_targets(names: Sequence[str], segments: Mapping[str, str], peers: int, seed: Any) -> Dict[str, Any]:
    """Which nodes each node probes when sampling: deterministic in (nodes, segments, peers, seed), O(N x peers).

    ``segments`` maps a node to its segment (nodes on one segment reach each other directly; between segments
    the traffic takes the fabric's path: a router, cloud routes). A node's ``peers`` are split between its own
    segment and the others (all in its own when there is one segment):

    * **in its segment**, the nodes at offsets ``r*k+1 .. r*k+k`` after it (in natural order, modulo the
      segment's size), where ``r`` is the seed modulo the segment's rotations ``ceil((size-1)/k)``: a circulant,
      so every node is the source **and the target** of exactly k probes, and the ``rotations`` consecutive
      seeds 0, 1, ... cover every ordered pair of the segment exactly once;
    * **to other segments**, each node's cross probes walk the other segments from an offset that moves with
      the seed by as many probes as the segment makes, so every ordered pair of segments is covered in
      ``ceil((segments-1)/(size x k_cross))`` consecutive seeds (in one run when the segment is big enough).

    A node that no one targets (possible only with one-node segments) is probed by the node before it in
    natural order. Returns ``{"targets": {node: [peers]}, "rotations": R, "rotation": r, "segments": m}``.
    """
    names = ordered(names)
    seed_value = _seed_int(seed)
    count = len(names)
    k = int(peers)
    groups: Dict[str, List[str]] = {}
    for name in names:
        groups.setdefault(str(segments.get(name, "")), []).append(name)
    keys = sorted(groups, key=natural_key)
    m = len(keys)
    targets: Dict[str, List[str]] = {n: [] for n in names}
    rotations = 1
    for a, key in enumerate(keys):
        members = groups[key]
        size = len(members)
        if m == 1:
            k_same, k_cross = k, 0
        elif k == 1:
            k_same, k_cross = (1, 0) if seed_value % 2 == 0 else (0, 1)
        else:
            k_cross = k // 2
            k_same = k - k_cross
        same = min(k_same, size - 1)
        k_cross = min(k_cross + (k_same - same), count - size)
        if same > 0:
            rot_count = -(-(size - 1) // same)
            rotations = max(rotations, rot_count)
            rot = seed_value % rot_count
            offsets = sorted({(rot * same + j) % (size - 1) + 1 for j in range(same)})
            for i, src in enumerate(members):
                targets[src].extend(members[(i + o) % size] for o in offsets)
        if k_cross > 0 and m > 1:
            window = size * k_cross
            rotations = max(rotations, -(-(m - 1) // window))
            start = seed_value * window
            for i, src in enumerate(members):
                chosen = []
                for q in range(k_cross):
                    t = i * k_cross + q
                    other = groups[keys[(a + (start + t) % (m - 1) + 1) % m]]
                    pick = other[(i + q + seed_value + t // (m - 1)) % len(other)]
                    if pick not in chosen:
                        chosen.append(pick)
                targets[src].extend(chosen)
    incoming = {n: 0 for n in names}
    for src in names:
        unique = list(dict.fromkeys(t for t in targets[src] if t != src))
        targets[src] = unique
        for dst in unique:
            incoming[dst] += 1
    for i, dst in enumerate(names):
        if incoming[dst] == 0 and count > 1:
            src = names[i - 1]
            targets[src].append(dst)
            incoming[dst] += 1
    return {"targets": targets, "rotations": rotations, "rotation": seed_value % rotations, "segments": m}


def selection_for(plan: Mapping[str, Any], nodes: Sequence[str], sample: Any = "auto",
                  seed: Any = 0) -> Tuple[Optional[Dict[str, List[str]]], Dict[str, Any]]:
    """(selection for :func:`cells` or None for the full matrix, the sampling facts for the report)."""
    plan_nodes = (plain(plan) or {}).get("nodes") or {}
    names = [n for n in ordered(nodes) if n in plan_nodes]
    k, why = peer_count(sample, len(names))
    seed_value = _seed_int(seed)
    sampling = {"mode": "full" if k is None else "sampled", "peers": k, "seed": seed_value, "rotation": 0,
                "rotations": 1, "segments": len({segment_of(plan_nodes[n]) for n in names}), "nodes": len(names),
                "why": why}
    if k is None:
        return None, sampling
    chosen = select_targets(names, {n: segment_of(plan_nodes[n]) for n in names}, k, seed_value)
    sampling.update(rotation=chosen["rotation"], rotations=chosen["rotations"], segments=chosen["segments"])
    return chosen["targets"], sampling


def plan_targets(plan: Mapping[str, Any], nodes: Sequence[str], pods: Mapping[str, Any],
                 servers: Mapping[str, Any], external: Optional[Mapping[str, Any]] = None, port: int = 47300,
                 peers: Optional[Mapping[str, Any]] = None, sample: Any = "auto", seed: Any = 0) -> Dict[str, Any]:
    """Everything the probe step needs, computed once for the whole run (O(number of probes)).

    Returns ``probes`` {node: [arguments of podnet.cluster.probe]}, ``servers`` {node: [its own probe
    servers, for the self-check]}, ``selection`` ({node: [peers]}, or None for the full matrix) and
    ``sampling`` (``mode`` full/sampled, ``peers``, ``seed``, ``rotation``, ``rotations``, ``segments``,
    ``nodes``, ``why``).
    """
    plan, pods, peers, servers, plan_nodes, names = matrix_inputs(plan, nodes, pods, peers, servers)
    selection, sampling = selection_for(plan, names, sample, seed)
    probes: Dict[str, List[Dict[str, Any]]] = {n: [] for n in names}
    for cell in cells(plan, names, pods, servers, external, port, peers=peers, selection=selection):
        if cell["skip"]:
            continue
        probes[cell["source"]].append({
            "id": cell["id"],
            "target": cell["address"],
            "port": cell["port"],
            "source_netns": cell["source_netns"],
            "connect_only": cell["connect_only"],
        })
    own: Dict[str, List[Dict[str, Any]]] = {}
    for name in names:
        checks = []
        for what, table in (("pod", pods), ("second pod", peers), ("node", servers)):
            server = table.get(name) or {}
            netns = server.get("netns")
            addrs = pod_ips(server) if what != "node" else [
                a for a in (address_of(x) for x in plan_nodes[name].get("node_ips") or []) if a]
            for addr in addrs[:2]:
                if server.get("name"):
                    checks.append({"id": "self/%s/%s" % (server["name"], addr), "target": addr, "port": port,
                                   "source_netns": netns, "connect_only": False})
        own[name] = checks
    return {"probes": probes, "servers": own, "selection": selection, "sampling": sampling}


def probes_for(plan: Mapping[str, Any], node: str, nodes: Sequence[str], pods: Mapping[str, Any],
               servers: Mapping[str, Any], external: Optional[Mapping[str, Any]] = None,
               port: int = 47300, peers: Optional[Mapping[str, Any]] = None,
               fabric: Optional[str] = None) -> List[Dict[str, Any]]:
    """The probes ``node`` runs (arguments of ``podnet.cluster.probe``): its cells that can be probed."""
    node = str(node)
    out = []
    for cell in cells(plan, nodes, pods, servers, external, port, source=node, peers=peers, fabric=fabric):
        if cell["skip"]:
            continue
        out.append({
            "id": cell["id"],
            "target": cell["address"],
            "port": cell["port"],
            "source_netns": cell["source_netns"],
            "connect_only": cell["connect_only"],
        })
    return out
