# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The verify matrix, controller side: which probes each node runs, and what their results prove.

Pure functions over plain data (standard library, the planner's helpers and the node configuration's
allocator split), used by the filter ``podnet.cluster.verify_matrix``
and unit-tested without Ansible:

* :func:`probe_addresses` - the addresses of a node's two probe pods when they are wired by hand
  (``mode: veth``): the highest addresses of each pod subnet that no allocator of the node (Docker's
  ``fixed-cidr``, host-local's range) hands out, or an error that says why there are none;
* :func:`cells` - the whole expected matrix: for every check, family, source and target, what to probe
  and what the answer must be (or why it cannot be probed);
* :func:`probes_for` - the cells one node runs, as arguments of the module ``podnet.cluster.probe``;
* :func:`judge` - every cell judged against the probe results, with per-check matrices, the list of
  failures, and a text report;
* :func:`preflight` - configuration errors found before anything is started.

The checks (the Kubernetes network model):

``pod_pod``   pod on A -> pod on B, every ordered pair including A = B, where the first probe pod of A talks to
              the second probe pod of A (two pods on one node, through the bridge). Passes when the target
              pod answered, and the address it saw = the client's own address = the pod on A's IP (no NAT,
              and the IP a pod sees itself as is the IP others see).
``node_pod``  node A -> pod on B. Passes when the pod answered and saw one of node A's own addresses,
              untranslated.
``pod_node``  pod on A -> node B (its node IP). Passes when node B's probe server saw pod A's IP.
``egress``    pod on A -> the external address. With a probe server there: passes when it answered and
              saw one of node A's addresses (the masquerade works). Without: passes when the TCP
              connection is established (reachability only).

Every family of the plan's cluster networks is probed (IPv4, and IPv6 when dual-stack).
"""

from __future__ import annotations

import functools
import math
import ipaddress
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.podnet.cluster.plugins.plugin_utils import node_config
from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError, natural_key

CHECKS: Tuple[Tuple[str, str], ...] = (
    ("pod_pod", "pod -> pod"),
    ("node_pod", "node -> pod"),
    ("pod_node", "pod -> node"),
    ("egress", "pod -> external"),
)
CHECK_TITLES = dict(CHECKS)
FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
EXTERNAL = "external"


class VerifyError(ValueError):
    """Bad input data (the message says which)."""


# --------------------------------------------------------------------------- #
# small helpers
# --------------------------------------------------------------------------- #

def address_of(text: Any) -> Optional[str]:
    """Canonical address text of ``addr`` or ``addr/prefix`` (None when it is not one)."""
    if text is None:
        return None
    return _address_of(str(text))


@functools.lru_cache(maxsize=65536)
def _address_of(text: str) -> Optional[str]:
    value = text.strip().split("/", 1)[0].split("%", 1)[0]
    if not value:
        return None
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def family_of(text: Any) -> Optional[int]:
    addr = address_of(text)
    return None if addr is None else (6 if ":" in addr else 4)


def network_of(text: Any) -> Optional[ipaddress._BaseNetwork]:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return None


def plan_families(plan: Mapping[str, Any]) -> List[int]:
    families = sorted({net.version for net in (network_of(c) for c in plan.get("cluster_cidrs") or []) if net})
    return families


def ordered(names: Iterable[str]) -> List[str]:
    return sorted({str(n) for n in names}, key=natural_key)


def short_error(error: Optional[str]) -> str:
    """A few words for a matrix cell."""
    if not error:
        return "?"
    text = str(error)
    for key, word in (("timeout", "timeout"), ("refused", "refused"), ("no route", "unreachable"),
                      ("unreachable", "unreachable"), ("reset", "reset"), ("no source address", "no source"),
                      ("not a podnet probe server", "not a probe server"), ("no answer", "no answer"),
                      ("source network namespace", "no source netns"), ("not probed", "not probed")):
        if key in text:
            return word
    return text.split("(", 1)[0].strip()[:24] or "error"


# --------------------------------------------------------------------------- #
# pods wired by hand
# --------------------------------------------------------------------------- #

def _allocator_ranges(plan: Mapping[str, Any], node: str, runtimes: Sequence[str],
                      fabric: Optional[str] = None) -> List[Tuple[int, int, str]]:
    """(first, last, what) of every address range an allocator of ``node`` may hand out.

    The ranges are those the node role configures (:func:`node_config.runtime_config`): Docker's
    ``fixed-cidr`` (IPv4) and host-local's ranges (``rangeStart``..``rangeEnd``, else the whole subnet
    after its network address). Whole networks are counted, conservatively.
    """
    try:
        config = node_config.runtime_config(plan, node, list(runtimes),
                                            fabric=fabric if fabric in node_config.OVERLAY else None)
    except PlanError as exc:
        raise VerifyError("; ".join(exc.errors))
    out: List[Tuple[int, int, str]] = []
    docker = config.get("docker") or {}
    if docker.get("fixed-cidr"):
        net = ipaddress.ip_network(docker["fixed-cidr"], strict=False)
        out.append((int(net.network_address), int(net.broadcast_address),
                    "Docker's fixed-cidr %s" % net))
    for plugin in (config.get("cni") or {}).get("plugins") or []:
        for range_set in (plugin.get("ipam") or {}).get("ranges") or []:
            for rng in range_set:
                net = ipaddress.ip_network(rng["subnet"], strict=False)
                start = int(ipaddress.ip_address(rng["rangeStart"])) if rng.get("rangeStart") else int(
                    net.network_address) + 1
                end = int(ipaddress.ip_address(rng["rangeEnd"])) if rng.get("rangeEnd") else int(
                    net.broadcast_address) - (1 if net.version == 4 else 0)
                out.append((start, end, "host-local's range %s-%s" % (
                    ipaddress.ip_address(start), ipaddress.ip_address(end))))
    return out


def probe_addresses(plan: Mapping[str, Any], node: str, runtimes: Sequence[str] = (), count: int = 2,
                    fabric: Optional[str] = None) -> List[List[str]]:
    """Addresses for the ``count`` probe pods of ``node`` wired by hand (``mode: veth``), one list per pod.

    Each list holds ``addr/prefix`` of one address per pod subnet (family), taken from the top of the subnet
    among the addresses that **no allocator of the node hands out** (Docker's ``fixed-cidr``, host-local's
    range, see :func:`_allocator_ranges`) and that are not the network, broadcast or gateway address, nor, with
    ``fabric`` vxlan, the VTEP address (:func:`node_config.vtep_address`, the last of an IPv6 block): a
    veth pod's address is set by hand, and one that Docker or host-local could also give to a container
    would break both. Raises :class:`VerifyError` (naming the host, the subnet and what covers it) when a
    subnet has fewer than ``count`` such addresses.
    """
    plan = plain(plan) or {}
    node = str(node)
    entry = (plan.get("nodes") or {}).get(node)
    if entry is None:
        raise VerifyError("%s is not a node of the plan" % node)
    ranges = _allocator_ranges(plan, node, runtimes or [], fabric)
    pods: List[List[str]] = [[] for _unused in range(count)]
    errors = []
    allocators = False
    gateways = {address_of(g) for g in list(entry.get("gateways") or []) + list(entry.get("bridge_addresses") or [])}
    for cidr in entry.get("pod_cidrs") or []:
        net = network_of(cidr)
        if net is None:
            raise VerifyError("host %s: pod CIDR %r is not a network" % (node, cidr))
        first = int(net.network_address) + 1
        last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
        taken = [(a, b, what) for a, b, what in ranges if b >= first and a <= last
                 and ipaddress.ip_address(a).version == net.version]
        gateway = int(net.network_address) + 1
        taken.append((gateway, gateway, "the gateway %s" % ipaddress.ip_address(gateway)))
        if fabric in node_config.OVERLAY:
            # the overlay device's own address in the block (node_config.vtep_address)
            vtep = int(node_config.vtep_address(node_config.to_ipnetwork(str(net))))
            taken.append((vtep, vtep, "the VTEP address %s" % ipaddress.ip_address(vtep)))
        for text in gateways:
            if text and family_of(text) == net.version and ipaddress.ip_address(text) in net:
                taken.append((int(ipaddress.ip_address(text)),) * 2 + ("the gateway %s" % text,))
        found: List[int] = []
        candidate = last
        for a, b, _what in sorted(taken, key=lambda r: -r[1]):
            # free addresses above this taken range, from the top down
            while candidate > b and len(found) < count:
                if candidate >= first:
                    found.append(candidate)
                candidate -= 1
            candidate = min(candidate, a - 1)
            if len(found) >= count:
                break
        while len(found) < count and candidate >= first:
            found.append(candidate)
            candidate -= 1
        if len(found) < count:
            what = [w for _a, _b, w in sorted(taken, key=lambda r: (r[0], r[1]))]
            errors.append("the probe pods need %d %s addresses of %s that no allocator hands out, and there %s: "
                          "of its %s (%s-%s), %s %s" % (
                              count, FAMILY_NAMES[net.version], net,
                              "is only %d" % len(found) if found else "are none",
                              _count_text(last - first + 1), ipaddress.ip_address(first), ipaddress.ip_address(last),
                              _join(what), ("leave%s only %s" % ("s" if len(set(what)) == 1 else "", _count_text(len(found)))
                                            if found else "cover%s them all" % ("s" if len(set(what)) == 1 else ""))))
            allocators = allocators or any(w.startswith(("Docker", "host-local")) for w in what)
            continue
        for index, value in enumerate(found):
            pods[index].append("%s/%d" % (ipaddress.ip_address(value), net.prefixlen))
    if errors:
        raise VerifyError("host %s: %s.%s" % (node, "; ".join(errors), (
            " A probe pod wired by hand (podnet_runtimes without cni) must not take an address that Docker or "
            "host-local may also give to a container, so verify cannot run there; put cni in podnet_runtimes "
            "(the probe pods then take host-local leases, like any pod)") if allocators else ""))
    return pods


def _join(items: Sequence[str]) -> str:
    items = list(dict.fromkeys(items))
    return items[0] if len(items) == 1 else "%s and %s" % (", ".join(items[:-1]), items[-1])


def _count_text(number: int) -> str:
    if number == 1:
        return "1 usable address"
    if number < 10 ** 6:
        return "%d usable addresses" % number
    return "about 2^%d usable addresses" % round(math.log2(number))


# --------------------------------------------------------------------------- #
# the expected matrix
# --------------------------------------------------------------------------- #

def _pod_ip(plan_node: Mapping[str, Any], pod: Optional[Mapping[str, Any]], family: int) -> Tuple[Optional[str], Optional[str]]:
    """(the pod's IP of ``family`` inside the node's pod subnet, or None and why)."""
    if not pod:
        return None, "no probe pod"
    ips = [a for a in (address_of(x) for x in (pod.get("ips") or pod.get("addresses") or [])) if a]
    subnets = [n for n in (network_of(c) for c in plan_node.get("pod_cidrs") or []) if n and n.version == family]
    if not subnets:
        return None, "no %s pod subnet in the plan" % FAMILY_NAMES[family]
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        if any(addr.version == net.version and addr in net for net in subnets):
            return ip, None
    return None, "the probe pod has no %s address in %s (it has: %s)" % (
        FAMILY_NAMES[family], ", ".join(str(s) for s in subnets), ", ".join(ips) or "none")


def _node_ip(plan_node: Mapping[str, Any], family: int) -> Optional[str]:
    for text in plan_node.get("node_ips") or []:
        if family_of(text) == family:
            return address_of(text)
    return None


def normalize_external(external: Optional[Mapping[str, Any]], default_port: int) -> Dict[str, Any]:
    external = plain(external) or {}
    port = external.get("port")
    try:
        port = int(port) if port not in (None, "") else int(default_port)
    except (TypeError, ValueError):
        raise VerifyError("external port %r is not a number" % (port,))
    return {
        4: address_of(external.get("ipv4")) if external.get("ipv4") else None,
        6: address_of(external.get("ipv6")) if external.get("ipv6") else None,
        "port": port,
        "server": str(external["server"]) if external.get("server") else None,
    }


# Fabrics that masquerade a pod's traffic to another node's node IP (docs/node.md says why): there pod -> node B
# passes when node B answered and saw an address of node A.
NODE_MASQUERADE_FABRICS = ("vxlan",)


def _matrix_inputs(plan: Any, nodes: Iterable[str], pods: Any, peers: Any, servers: Any) -> Tuple[
        Dict[str, Any], Dict[str, Any], Dict[str, Any], Dict[str, Any], Dict[str, Any], List[str]]:
    """The matrix's inputs as plain data (``{}`` for none): plan, pods, peers, servers, the plan's nodes, and the
    names of ``nodes`` that the plan has, in display order."""
    plan = plain(plan) or {}
    plan_nodes = plan.get("nodes") or {}
    return (plan, plain(pods) or {}, plain(peers) or {}, plain(servers) or {}, plan_nodes,
            [n for n in ordered(nodes) if n in plan_nodes])


def cells(plan: Mapping[str, Any], nodes: Sequence[str], pods: Mapping[str, Any], servers: Mapping[str, Any],
          external: Optional[Mapping[str, Any]] = None, port: int = 47300,
          source: Optional[str] = None, peers: Optional[Mapping[str, Any]] = None,
          selection: Optional[Mapping[str, Sequence[str]]] = None,
          fabric: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every cell of the matrix (only those from ``source`` when given), in display order.

    ``selection`` (from :func:`select_targets`) limits each source to the nodes listed for it (and itself):
    a sampled matrix. None: every node probes every node (the full matrix).

    ``pods`` maps each node to its (first) probe pod, ``peers`` to its second one: the ``pod_pod`` cell of a
    node with itself goes from the first pod to the second, so that it proves pod <-> pod on the same node
    (through the bridge) with two pods, not one pod talking to itself.

    A cell: ``id``, ``check``, ``family``, ``source``, ``target`` (a node name or ``external``),
    ``address`` (what is probed), ``port``, ``source_netns`` (None: the node itself), ``connect_only``,
    ``expect`` (``seen``: the one address the server must see, or None; ``seen_from_node``: the seen
    address must be one of the source node's; ``server``: the name that must answer, or None;
    ``masqueraded``: the pod's address is translated on purpose, pod -> another node in a fabric of
    NODE_MASQUERADE_FABRICS) and ``skip`` (why the cell cannot be probed, or None).
    """
    plan, pods, peers, servers, plan_nodes, names = _matrix_inputs(plan, nodes, pods, peers, servers)
    ext = normalize_external(external, port)
    sources = [n for n in names if source is None or n == str(source)]
    out: List[Dict[str, Any]] = []
    if selection is None:
        rows = {src: names for src in sources}
    else:
        known = set(names)
        rows = {src: [src] + [d for d in (selection.get(src) or []) if d in known and d != src] for src in sources}

    def add(check, family, src, dst, address, source_netns, expect, skip, connect_only=False, cell_port=port):
        out.append({
            "id": "%s/%d/%s/%s" % (check, family, src, dst),
            "check": check,
            "family": family,
            "source": src,
            "target": dst,
            "address": address,
            "port": cell_port,
            "source_netns": source_netns,
            "connect_only": connect_only,
            "expect": expect,
            "skip": skip,
        })

    for family in plan_families(plan):
        pod_ip = {n: _pod_ip(plan_nodes[n], pods.get(n), family) for n in names}
        peer_ip = {n: _pod_ip(plan_nodes[n], peers.get(n), family) for n in names}
        node_ips = {n: _node_ip(plan_nodes[n], family) for n in names}

        def pod_source(src):
            pod = pods.get(src) or {}
            ip, why = pod_ip[src]
            if why:
                return None, None, "not probed: %s on %s" % (why, src)
            if not pod.get("netns"):
                return None, None, "not probed: the probe pod on %s has no network namespace" % src
            return pod["netns"], ip, None

        # pod -> pod (the same node: the first pod -> the second pod)
        for src in sources:
            netns, src_ip, why_src = pod_source(src)
            for dst in rows[src]:
                target = peers if dst == src else pods
                dst_ip, why_dst = peer_ip[dst] if dst == src else pod_ip[dst]
                if why_dst and dst == src:
                    why_dst = "no second probe pod" if why_dst == "no probe pod" else why_dst + " (second pod)"
                skip = why_src or ("not probed: %s on %s" % (why_dst, dst) if why_dst else None)
                add("pod_pod", family, src, dst, dst_ip, netns,
                    {"seen": src_ip, "seen_from_node": False, "server": (target.get(dst) or {}).get("name")}, skip)
        # node -> pod
        for src in sources:
            for dst in rows[src]:
                dst_ip, why_dst = pod_ip[dst]
                add("node_pod", family, src, dst, dst_ip, None,
                    {"seen": None, "seen_from_node": True, "server": (pods.get(dst) or {}).get("name")},
                    "not probed: %s on %s" % (why_dst, dst) if why_dst else None)
        # pod -> node
        for src in sources:
            netns, src_ip, why_src = pod_source(src)
            for dst in rows[src]:
                node_ip = node_ips[dst]
                server = servers.get(dst) or {}
                skip = why_src
                if not skip and node_ip is None:
                    skip = "not probed: node %s has no %s node IP in the plan" % (dst, FAMILY_NAMES[family])
                if not skip and not server.get("name"):
                    skip = "not probed: no probe server on node %s" % dst
                masq = fabric in NODE_MASQUERADE_FABRICS and dst != src
                add("pod_node", family, src, dst, node_ip, netns,
                    {"seen": None if masq else src_ip, "seen_from_node": masq, "server": server.get("name"),
                     "masqueraded": masq}, skip)
        # pod -> external
        if ext[family]:
            for src in sources:
                netns, _src_ip, why_src = pod_source(src)
                add("egress", family, src, EXTERNAL, ext[family], netns,
                    {"seen": None, "seen_from_node": bool(ext["server"]), "server": ext["server"]},
                    why_src, connect_only=not ext["server"], cell_port=ext["port"])
    return out


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
    plan, pods, peers, servers, plan_nodes, names = _matrix_inputs(plan, nodes, pods, peers, servers)
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
            addrs = _ips(server) if what != "node" else [
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


# --------------------------------------------------------------------------- #
# judging
# --------------------------------------------------------------------------- #

#: What a failure says about whom: the network (the pod network is wrong), the harness (verify's own probe
#: servers did not serve: not the network), capacity (the source's kernel could not hold a neighbour entry),
#: setup (a cell that could not be probed: a pod did not start, an address is missing).
CATEGORIES = ("network", "harness", "capacity", "setup")


def _server_down(cell: Mapping[str, Any], self_checks: Mapping[str, Any]) -> Optional[str]:
    """Why the target's probe server did not serve (its own self-check failed), or None (it served or unknown)."""
    name = (cell.get("expect") or {}).get("server")
    if not name or name not in self_checks:
        return None
    check = self_checks[name]
    if check.get("ok"):
        return None
    return check.get("error") or "failed"


def explain(cell: Mapping[str, Any], result: Mapping[str, Any], self_checks: Mapping[str, Any]) -> Tuple[str, str]:
    """(category, reason) of a probe that got no answer, in words a user can act on."""
    error = str(result.get("error") or "failed")
    attempts = int(result.get("attempts") or 1)
    tried = " (%d attempts)" % attempts if attempts > 1 else ""
    diagnosis = result.get("diagnosis")
    diag = ("; " + diagnosis) if diagnosis else ""
    where = "%s:%s" % (cell.get("address"), cell.get("port"))
    down = _server_down(cell, self_checks)
    server = (cell.get("expect") or {}).get("server")
    if down and any(w in error for w in ("timeout (connect", "refused")):
        return "harness", ("the probe server %s does not answer even inside its own namespace (%s): it is not "
                           "running or not serving yet, a problem of verify, not of the network%s"
                           % (server, down, tried))
    if result.get("neighbour") == "missing":
        return "capacity", ("%s: the source's kernel has no neighbour entry for the next hop%s: its ARP/NDP table "
                            "is full (net.ipv4.neigh.default.gc_thresh3 / net.ipv6.neigh.default.gc_thresh3); raise "
                            "it, or probe fewer peers at once (podnet_verify_peers)%s" % (error, diag, tried))
    if "timeout (answer" in error or "no answer" in error:
        return "harness", ("the connection to %s was accepted but the probe server did not answer in time%s: it "
                           "is overloaded or stuck, a problem of verify, not of the network (the path works)"
                           % (where, tried))
    if "timeout (connect" in error:
        return "network", ("%s: no answer to the connection to %s%s: the packets are dropped on the way or "
                           "the answers do not come back (a firewall or FORWARD policy, a route missing on one "
                           "side, the bridge down)%s" % (error, where, tried, diag))
    if "refused" in error:
        return "network", ("%s: the connection to %s was refused although its probe server listens: something "
                           "on the path or on the target rejects it (a REJECT rule)%s" % (error, where, tried))
    if "reset" in error:
        return "network", "%s: the connection to %s was reset on the way%s" % (error, where, tried)
    if "no route" in error or "unreachable" in error:
        if diagnosis and result.get("neighbour") != "none":
            return "network", "%s: %s%s" % (error, diagnosis, tried)
        return "network", "%s: no route to %s from the source%s%s" % (error, cell.get("address"), diag, tried)
    if "no source address" in error:
        return "network", "the source has no address to reach %s from (%s)" % (cell.get("address"), error)
    if "not a podnet probe server" in error:
        return "network", "%s answers, but not as a probe server: another host holds the address (%s)" % (
            where, error)
    return "network", error + tried


def _verdict(cell: Mapping[str, Any], result: Optional[Mapping[str, Any]], node_addresses: Iterable[str],
             self_checks: Optional[Mapping[str, Any]] = None) -> Tuple[bool, str, str, str]:
    """(passed, cell text, reason, category) of one cell."""
    if cell["skip"]:
        return False, "FAIL (%s)" % short_error(cell["skip"]), cell["skip"], "setup"
    if result is None:
        return (False, "FAIL (no result)", "not probed: node %s returned no result for it" % cell["source"],
                "setup")
    if not result.get("ok"):
        error = result.get("error") or "failed"
        category, reason = explain(cell, result, self_checks or {})
        return False, "FAIL (%s)" % short_error(error), reason, category
    if cell["connect_only"]:
        return True, "ok", "connected (reachability only: no probe server there)", ""
    expect = cell["expect"]
    seen = address_of(result.get("seen"))
    local = address_of(result.get("local"))
    server = result.get("server")
    if expect.get("server") and server != expect["server"]:
        return False, "FAIL (%s)" % (seen or "?"), "answered by %r, expected %r (another host has this address?)" % (
            server, expect["server"]), "network"
    if cell["check"] != "egress" and not cell["expect"].get("masqueraded") and seen != local:
        return (False, "FAIL (%s)" % (seen or "?"), "NAT: the server saw %s, the client is %s" % (seen, local),
                "network")
    if expect.get("seen") and seen != address_of(expect["seen"]):
        return (False, "FAIL (%s)" % (seen or "?"),
                "seen as %s, expected the pod's own IP %s" % (seen, expect["seen"]), "network")
    if expect.get("seen_from_node"):
        if seen not in node_addresses:
            what = ("not masqueraded to an address of node %s" if cell["check"] == "egress"
                    else "not an address of node %s")
            return False, "FAIL (%s)" % (seen or "?"), ("seen as %s: " + what) % (seen, cell["source"]), "network"
    return True, "ok", "seen as %s" % seen, ""


def judge(plan: Mapping[str, Any], nodes: Sequence[str], pods: Mapping[str, Any], servers: Mapping[str, Any],
          results: Mapping[str, Any], external: Optional[Mapping[str, Any]] = None,
          port: int = 47300, peers: Optional[Mapping[str, Any]] = None,
          selection: Optional[Mapping[str, Sequence[str]]] = None,
          sampling: Optional[Mapping[str, Any]] = None,
          fabric: Optional[str] = None) -> Dict[str, Any]:
    """Judge every cell against the probe results (``results``: node -> result of ``podnet.cluster.probe``).

    ``selection``/``sampling``: those of :func:`plan_targets` when the matrix was sampled (the same cells are
    rebuilt, O(number of probes)). Returns ``passed``, ``total``, ``ok_count``, ``failed_count``,
    ``sampling``, ``checks`` (one matrix per check and family: ``title``, ``sources``, ``targets``, ``rows``
    {source: {target: cell text}}, ``ok_count``, ``total``), ``failures`` (each with check, family, source,
    target, address, seen, local, reason, category), ``failures_by_source`` (source node -> lines),
    ``categories`` (failures per category), ``retried`` (probes that passed only on a later attempt),
    ``report`` (text) and ``report_lines``.
    """
    plan = plain(plan) or {}
    results = plain(results) or {}
    selection = plain(selection)
    all_cells = cells(plan, nodes, pods, servers, external, port, peers=peers, selection=selection,
                      fabric=fabric)
    by_id: Dict[str, Dict[str, Any]] = {}
    addresses: Dict[str, Any] = {}
    self_checks: Dict[str, Any] = {}
    plan_nodes = plan.get("nodes") or {}
    for node, res in results.items():
        res = res or {}
        addresses[node] = {address_of(a) for a in list(res.get("addresses") or []) +
                           list((plan_nodes.get(node) or {}).get("node_ips") or [])} - {None}
        for probe in res.get("probes") or []:
            if isinstance(probe, dict) and probe.get("id") is not None:
                by_id[str(probe["id"])] = probe
        for check in res.get("self_checks") or []:
            if isinstance(check, dict) and str(check.get("id") or "").startswith("self/"):
                name = str(check["id"]).split("/", 2)[1]
                # a server with several addresses serves when every one answered
                if name not in self_checks or self_checks[name].get("ok"):
                    self_checks[name] = check

    matrices: Dict[Tuple[str, int], Dict[str, Any]] = {}
    failures: List[Dict[str, Any]] = []
    failures_by_source: Dict[str, List[str]] = {}
    categories: Dict[str, int] = {}
    retried = 0
    ok_count = 0
    for cell in all_cells:
        result = by_id.get(cell["id"])
        passed, text, reason, category = _verdict(cell, result, addresses.get(cell["source"], set()), self_checks)
        key = (cell["check"], cell["family"])
        if key not in matrices:
            ext_addr = cell["address"] if cell["check"] == "egress" else None
            matrices[key] = {
                "check": cell["check"],
                "family": cell["family"],
                "title": "%s (%s%s)" % (CHECK_TITLES[cell["check"]], FAMILY_NAMES[cell["family"]],
                                        " %s port %s" % (ext_addr, cell["port"]) if ext_addr else ""),
                "sources": [],
                "targets": [],
                "rows": {},
                "ok_count": 0,
                "total": 0,
                "_sources": set(),
                "_targets": set(),
            }
        matrix = matrices[key]
        if cell["source"] not in matrix["_sources"]:
            matrix["_sources"].add(cell["source"])
            matrix["sources"].append(cell["source"])
        if cell["target"] not in matrix["_targets"]:
            matrix["_targets"].add(cell["target"])
            matrix["targets"].append(cell["target"])
        matrix["rows"].setdefault(cell["source"], {})[cell["target"]] = text
        matrix["total"] += 1
        if passed:
            ok_count += 1
            matrix["ok_count"] += 1
            if result and int(result.get("attempts") or 1) > 1:
                retried += 1
            continue
        failure = {
            "check": cell["check"],
            "family": cell["family"],
            "source": cell["source"],
            "target": cell["target"],
            "address": cell["address"],
            "seen": address_of((result or {}).get("seen")),
            "local": address_of((result or {}).get("local")),
            "reason": reason,
            "category": category,
        }
        failures.append(failure)
        categories[category] = categories.get(category, 0) + 1
        failures_by_source.setdefault(cell["source"], []).append(describe_failure(failure))

    checks = [matrices[k] for k in sorted(matrices, key=lambda k: ([c for c, _t in CHECKS].index(k[0]), k[1]))]
    names = [n for n in ordered(nodes) if n in plan_nodes]
    for matrix in checks:
        del matrix["_sources"], matrix["_targets"]
        if matrix["check"] != "egress":
            matrix["targets"] = [n for n in names if n in set(matrix["targets"])]
    total = len(all_cells)
    pods = plain(pods) or {}
    peers = plain(peers) or {}
    endpoints = {}
    for name in names:
        pod = pods.get(name) or {}
        peer = peers.get(name) or {}
        endpoints[name] = {
            "pod": pod.get("name"),
            "pod_mode": pod.get("mode"),
            "pod_ips": _ips(pod),
            "peer": peer.get("name"),
            "peer_ips": _ips(peer),
            "node_ips": [a for a in (address_of(x) for x in plan_nodes[name].get("node_ips") or []) if a],
        }
    if sampling is None:
        sampling = {"mode": "full" if selection is None else "sampled", "nodes": len(names),
                    "why": "full matrix" if selection is None else "sampled"}
    summary = {
        "passed": total > 0 and not failures,
        "total": total,
        "ok_count": ok_count,
        "failed_count": len(failures),
        "nodes": names,
        "families": plan_families(plan),
        "sampling": dict(plain(sampling)),
        "endpoints": endpoints,
        "checks": checks,
        "failures": failures,
        "failures_by_source": failures_by_source,
        "categories": categories,
        "retried": retried,
        "self_checks_failed": sorted(n for n, c in self_checks.items() if not c.get("ok")),
    }
    lines = render(summary)
    summary["report_lines"] = lines
    summary["report"] = "\n".join(lines)
    return summary


def _ips(pod: Mapping[str, Any]) -> List[str]:
    return [a for a in (address_of(x) for x in pod.get("ips") or pod.get("addresses") or []) if a]


def describe_failure(failure: Mapping[str, Any]) -> str:
    src = failure["source"]
    dst = failure["target"]
    what = {
        "pod_pod": ("pod on %s -> pod on %s" % (src, dst)) if src != dst else (
            "pod on %s -> second pod on %s" % (src, dst)),
        "node_pod": "node %s -> pod on %s" % (src, dst),
        "pod_node": "pod on %s -> node %s" % (src, dst),
        "egress": "pod on %s -> external" % src,
    }[failure["check"]]
    category = failure.get("category")
    return "%s %s (%s): %s%s" % (FAMILY_NAMES[failure["family"]], what, failure.get("address") or "-",
                                 "[%s] " % category if category else "", failure["reason"])


def sampling_line(sampling: Mapping[str, Any]) -> str:
    """One line saying which probes ran: the full matrix, or a sample with its seed and rotation."""
    if not sampling:
        return "Probes: full matrix"
    if sampling.get("mode") != "sampled":
        return "Probes: %s" % sampling.get("why", "full matrix")
    text = "Probes: %s, seed %s" % (sampling.get("why"), sampling.get("seed"))
    rotations = int(sampling.get("rotations") or 1)
    if rotations > 1:
        text += (" (rotation %d of %d: the seeds 0 to %d together cover every pair of nodes of a segment"
                 % (int(sampling.get("rotation") or 0), rotations, rotations - 1))
        text += " and every pair of segments)" if int(sampling.get("segments") or 1) > 1 else ")"
    text += "; every node is a source and a target of every check. Set podnet_verify_seed to repeat a run."
    return text


def _table(rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths))).rstrip() for row in rows]


def render(summary: Mapping[str, Any]) -> List[str]:
    """The report as text lines.

    Up to :data:`REPORT_MATRIX_MAX` nodes: the endpoints, then one matrix per check and family (rows =
    source, columns = target; ``-`` = not probed in a sampled run). Above: one line per check and family
    (N of M ok) and the failing cells only, grouped by source node. Then the failures and the verdict.
    """
    lines: List[str] = [sampling_line(summary.get("sampling") or {})]
    big = len(summary.get("nodes") or []) > REPORT_MATRIX_MAX
    endpoints = summary.get("endpoints") or {}
    if endpoints and not big:
        rows = [["node", "probe pod", "second pod", "node IPs"]]
        for name, info in endpoints.items():
            pod = ", ".join(info["pod_ips"]) or "(no probe pod)"
            if info.get("pod_mode"):
                pod += " (%s)" % info["pod_mode"]
            peer = ", ".join(info.get("peer_ips") or []) or "(no second pod)"
            rows.append([str(name), pod, peer, ", ".join(info["node_ips"]) or "-"])
        lines.append("")
        lines.extend(_table(rows))
    lines.append("")
    for matrix in summary["checks"]:
        status = "all ok" if matrix["ok_count"] == matrix["total"] else "%d FAILED" % (
            matrix["total"] - matrix["ok_count"])
        lines.append("%s: %d of %d ok%s" % (matrix["title"], matrix["ok_count"], matrix["total"],
                                            "" if status == "all ok" else ", " + status))
        if big:
            continue
        header = ["from \\ to"] + [str(t) for t in matrix["targets"]]
        rows = [header]
        for src in matrix["sources"]:
            row = [str(src)]
            for dst in matrix["targets"]:
                row.append(matrix["rows"].get(src, {}).get(dst, "-"))
            rows.append(row)
        lines.extend(_table(rows))
        lines.append("")
    if big:
        lines.append("")
    if summary.get("retried"):
        lines.append("%d probes answered only when tried again (the first attempt got no answer in time)"
                     % summary["retried"])
    if summary["failures"]:
        cats = summary.get("categories") or {}
        lines.append("FAILED: %d of %d probes (%s)" % (summary["failed_count"], summary["total"], ", ".join(
            "%d %s" % (cats[c], c) for c in CATEGORIES if cats.get(c))))
        if cats.get("harness") or cats.get("capacity"):
            lines.append("  (harness: verify's own probe servers did not serve; capacity: the node's kernel "
                         "could not hold a neighbour entry; network: the pod network itself)")
        if big:
            by_source: Dict[str, List[Mapping[str, Any]]] = {}
            for failure in summary["failures"]:
                by_source.setdefault(failure["source"], []).append(failure)
            for source in ordered(by_source):
                items = by_source[source]
                lines.append("  from %s: %d failed" % (source, len(items)))
                for failure in items:
                    lines.append("    - " + describe_failure(failure))
        else:
            for failure in summary["failures"]:
                lines.append("  - " + describe_failure(failure))
    else:
        lines.append("PASSED: %d of %d probes ok" % (summary["ok_count"], summary["total"]))
    return lines


# --------------------------------------------------------------------------- #
# preflight
# --------------------------------------------------------------------------- #

def preflight(plan: Any, node: str, runtimes: Any = None, external: Optional[Mapping[str, Any]] = None,
              external_host: Any = None, inventory_hosts: Optional[Sequence[str]] = None,
              port: Any = 47300, timeout: Any = 3, fabric: Optional[str] = None) -> List[str]:
    """Configuration errors, each naming the variable; an empty list when verify can run."""
    errors: List[str] = []
    plan = plain(plan)
    if not isinstance(plan, dict) or not isinstance(plan.get("nodes"), dict):
        errors.append("podnet_plan is not set: run the role podnet.cluster.plan first "
                      "(the playbook podnet.cluster.verify does)")
        return errors
    if str(node) not in plan["nodes"]:
        errors.append("%s is not in podnet_plan.nodes: it is not a planned node (inventory group?)" % node)
    if not plan_families(plan):
        errors.append("podnet_plan.cluster_cidrs holds no network")
    runtimes = plain(runtimes)
    if runtimes is not None:
        if not isinstance(runtimes, list):
            errors.append("podnet_runtimes must be a list, got %r" % (runtimes,))
        else:
            bad = [r for r in runtimes if r not in ("docker", "cni")]
            if bad:
                errors.append("podnet_runtimes: unknown runtime(s) %s (known: docker, cni)" % ", ".join(map(str, bad)))
            elif "cni" not in runtimes and str(node) in plan["nodes"]:
                # the probe pods are wired by hand: they need addresses that no allocator hands out
                try:
                    probe_addresses(plan, str(node), runtimes, fabric=fabric)
                except VerifyError as exc:
                    errors.append(str(exc))
    for name, value, low, high in (("podnet_verify_port", port, 1, 65535), ("podnet_verify_timeout", timeout, 0.1, 600)):
        try:
            number = float(value)
            if not low <= number <= high:
                raise ValueError
        except (TypeError, ValueError):
            errors.append("%s: %r is not in %s..%s" % (name, value, low, high))
    external = plain(external) or {}
    cluster = [n for n in (network_of(c) for c in plan.get("cluster_cidrs") or []) if n]
    underlay = [n for n in (network_of(c) for c in plan.get("node_cidrs") or []) if n]
    for family, var in ((4, "podnet_verify_external"), (6, "podnet_verify_external_ipv6")):
        value = external.get("ipv4" if family == 4 else "ipv6")
        if not value:
            continue
        addr = address_of(value)
        if addr is None or family_of(addr) != family or "/" in str(value):
            errors.append("%s: %r is not an %s address" % (var, value, FAMILY_NAMES[family]))
            continue
        ip = ipaddress.ip_address(addr)
        inside = [str(n) for n in cluster + underlay if n.version == family and ip in n]
        if inside:
            errors.append("%s: %s is inside %s; the external target must be outside the cluster and node "
                          "networks (traffic to it is the traffic that gets masqueraded)" % (var, addr, inside[0]))
        if family not in plan_families(plan):
            errors.append("%s is set but the plan has no %s cluster network" % (var, FAMILY_NAMES[family]))
    if external_host:
        if inventory_hosts is not None and str(external_host) not in [str(h) for h in inventory_hosts]:
            errors.append("podnet_verify_external_host: %r is not an inventory host" % (external_host,))
        if not external.get("ipv4") and not external.get("ipv6"):
            errors.append("podnet_verify_external_host is set but neither podnet_verify_external nor "
                          "podnet_verify_external_ipv6 says which of its addresses to probe")
    return errors
