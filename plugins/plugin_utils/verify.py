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
* :func:`preflight` - configuration errors found before anything is started;
* sampling (each node probes a few peers; the cells one node runs, :func:`probes_for`): plugin_utils/verify_sample.py;
* judging (every cell judged against the probe results, with per-check matrices, the list of failures, and a
  text report, :func:`judge`): plugin_utils/verify_judge.py.

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


def node_view(plan: Any, node: Any) -> Any:
    """The plan as the checks of one node read it, as plain data: its own entry of ``nodes`` and the plan's other
    fields (not ``diff``, the state file's text). A per-host task that converted the whole plan would cost O(N) on
    each of N hosts; this costs O(1) per host. Not a plan (no ``nodes`` mapping): converted whole, for the
    caller's own error."""
    if not isinstance(plan, Mapping) or not isinstance(plan.get("nodes"), Mapping):
        return plain(plan)
    view = {str(k): plain(v) for k, v in plan.items() if k not in ("nodes", "diff")}
    nodes = plan["nodes"]
    view["nodes"] = {str(node): plain(nodes[node])} if node in nodes else {}
    return view


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


def matrix_inputs(plan: Any, nodes: Iterable[str], pods: Any, peers: Any, servers: Any) -> Tuple[
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
    plan, pods, peers, servers, plan_nodes, names = matrix_inputs(plan, nodes, pods, peers, servers)
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


def pod_ips(pod: Mapping[str, Any]) -> List[str]:
    """The addresses of a probe pod's result (its ``ips``, else its ``addresses``), without prefixes."""
    return [a for a in (address_of(x) for x in pod.get("ips") or pod.get("addresses") or []) if a]


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
