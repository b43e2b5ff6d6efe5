# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The pod-CIDR planner: pure functions, no Ansible, no I/O.

``make_plan`` takes the cluster configuration, the inventory's nodes and the
previous state (as read from the state file) and returns every node's pod
subnets plus the new state.  Every problem is collected and raised together as
one :class:`PlanError` whose lines name the variable, the host and the
arithmetic, so that nothing is changed anywhere when a plan is bad.

Rules (see docs/plan.md):

* sticky: a node recorded in the state keeps its blocks while it stays in the
  inventory; an explicit ``podnet_pod_cidrs`` is honoured when valid;
* deterministic: new nodes, in natural name order, take the lowest never-used
  block; blocks freed by removed nodes are recorded as ``released`` and handed
  out again, oldest first, only when no never-used block is left;
* validated: networks, host bits, node prefixes, overlaps among cluster,
  service and reserved CIDRs, node IPs, explicit claims, exhaustion.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

try:
    import netaddr
except ImportError as _exc:  # pragma: no cover - exercised only without netaddr
    netaddr = None
    NETADDR_IMPORT_ERROR: Optional[ImportError] = _exc
else:
    NETADDR_IMPORT_ERROR = None

STATE_VERSION = 1
FAMILIES = (4, 6)
FAMILY_NAME = {4: "IPv4", 6: "IPv6"}
PREFIX_VAR = {4: "podnet_node_prefix_ipv4", 6: "podnet_node_prefix_ipv6"}
# A node needs its gateway and at least one pod address.
MIN_USABLE = 2


class PlanError(ValueError):
    """Raised with every problem found; ``errors`` holds one line each."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class NodeInput:
    """What the inventory says about one node."""

    name: str
    # podnet_node_ip as given (str or list); None when unset.
    node_ip: Any = None
    # Default addresses from facts, e.g. ansible_default_ipv4 / _ipv6 dicts.
    fact_ipv4: Optional[Mapping[str, Any]] = None
    fact_ipv6: Optional[Mapping[str, Any]] = None
    # Facts of the interfaces those name ({name: ansible_facts[name]}): a family without a default route (a router
    # away) takes its address from the interface that holds the other family's.
    fact_interfaces: Optional[Mapping[str, Any]] = None
    # podnet_pod_cidrs as given (str or list); None when unset.
    pod_cidrs: Any = None
    # Pod subnets the node already holds (its record, the gateways on its bridge), as probed; None: not asked.
    held: Any = None
    # Its fabric carries every pod family over any underlay family (podnet_fabric vxlan): one node IP of any
    # family is enough.
    any_underlay: bool = False

    @property
    def has_node_ip(self) -> bool:
        """podnet_node_ip is set (else the node's address comes from facts)."""
        return self.node_ip not in (None, "", [])


@dataclass
class PlanConfig:
    cluster_cidrs: Sequence[str] = ("10.244.0.0/16",)
    node_prefix_ipv4: Any = 24
    node_prefix_ipv6: Any = 64
    service_cidrs: Sequence[str] = ()
    reserved_cidrs: Sequence[str] = ()
    # Recorded nodes missing from the inventory keep their blocks (a dynamic inventory that hides stopped
    # instances must not release live blocks) unless listed in ``release``; False: release them (prune).
    keep_absent: bool = False
    release: Sequence[str] = ()
    # Let a node lose a block it holds: a dropped family, a changed cluster network or node prefix, a held block
    # given elsewhere (its pods lose those addresses). A recorded block the node does not hold (it was asked, and
    # holds nothing of it) is planned anew without it.
    allow_readdress: bool = False
    # The plan is read only (verify, teardown): a recorded block that does not fit the variables means the
    # variables differ from the plan that was applied, so the advice is not to confirm a change.
    read_only: bool = False


@dataclass
class NodePlan:
    name: str
    node_ips: List[str]
    node_cidrs: List[str]
    pod_cidrs: List[str]
    gateways: List[str]
    bridge_addresses: List[str]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "node_ips": list(self.node_ips),
            "node_cidrs": list(self.node_cidrs),
            "pod_cidrs": list(self.pod_cidrs),
            "gateways": list(self.gateways),
            "bridge_addresses": list(self.bridge_addresses),
        }


@dataclass
class PlanResult:
    cluster_cidrs: List[str]
    service_cidrs: List[str]
    reserved_cidrs: List[str]
    node_prefixes: Dict[int, int]
    nodes: Dict[str, NodePlan]
    state: Dict[str, Any]
    added: Dict[str, List[str]] = field(default_factory=dict)
    released: Dict[str, List[str]] = field(default_factory=dict)
    absent: Dict[str, List[str]] = field(default_factory=dict)

    def node_cidrs(self) -> List[str]:
        """Underlay networks known from the nodes' addresses, merged."""
        nets = {c for n in self.nodes.values() for c in n.node_cidrs}
        return [fmt_network(n) for n in netaddr.cidr_merge([to_ipnetwork(c) for c in nets])]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "cluster_cidrs": list(self.cluster_cidrs),
            "service_cidrs": list(self.service_cidrs),
            "reserved_cidrs": list(self.reserved_cidrs),
            "node_prefix_ipv4": self.node_prefixes.get(4),
            "node_prefix_ipv6": self.node_prefixes.get(6),
            "node_cidrs": self.node_cidrs(),
            "nodes": {name: node.as_dict() for name, node in self.nodes.items()},
        }


def require_netaddr() -> None:
    if netaddr is None:
        raise PlanError(
            ["the podnet.cluster planner needs the Python library 'netaddr' on the controller: "
             "pip install netaddr (%s)" % NETADDR_IMPORT_ERROR]
        )


def natural_key(name: str) -> Tuple[Any, ...]:
    """node2 before node10; ties broken by the plain name, so the order is total."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts) + ((2, 0, name),)


def as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def to_ipnetwork(text: str) -> "netaddr.IPNetwork":
    """netaddr.IPNetwork of ``address/prefix`` (or a bare address, as a host route).

    Strict (inet_pton) parsing; the tuple form skips netaddr's slower string parser,
    which matters for the 10,000 CIDRs of a 5,000-node dual-stack state file.
    """
    address, slash, prefix = text.partition("/")
    family, version, bits = (socket.AF_INET6, 6, 128) if ":" in address else (socket.AF_INET, 4, 32)
    try:
        value = int.from_bytes(socket.inet_pton(family, address), "big")
    except OSError:
        raise netaddr.AddrFormatError("invalid address %r" % address)
    if slash:
        if not prefix.isdigit() or int(prefix) > bits:
            raise netaddr.AddrFormatError("invalid prefix %r" % prefix)
        length = int(prefix)
    else:
        length = bits
    return netaddr.IPNetwork((value, length), version=version)


def fmt_address(value: int, version: int) -> str:
    """Canonical text of an address (RFC 5952 for IPv6), faster than str(netaddr.IPAddress)."""
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def fmt_network(net: "netaddr.IPNetwork") -> str:
    return "%s/%d" % (fmt_address(net.first, net.version), net.prefixlen)


def parse_network(value: Any, what: str, errors: List[str]) -> Optional["netaddr.IPNetwork"]:
    """A network in CIDR form with no host bits, or None with an error recorded."""
    text = str(value).strip() if value is not None else ""
    if "/" not in text:
        errors.append("%s: %r is not a network in CIDR form (address/prefix)" % (what, value))
        return None
    try:
        net = to_ipnetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        errors.append("%s: %r is not a network in CIDR form (address/prefix)" % (what, value))
        return None
    if net.ip != net.network:
        errors.append(
            "%s: %s has host bits set: the /%d network that holds it is %s"
            % (what, text, net.prefixlen, net.cidr)
        )
        return None
    return net


def parse_prefix(value: Any, family: int, errors: List[str]) -> Optional[int]:
    var = PREFIX_VAR[family]
    bits = 32 if family == 4 else 128
    try:
        prefix = int(str(value).lstrip("/"))
    except (TypeError, ValueError):
        errors.append("%s: %r is not a prefix length" % (var, value))
        return None
    if not 0 < prefix <= bits:
        errors.append("%s: %d is not a prefix length for %s (1..%d)" % (var, prefix, FAMILY_NAME[family], bits))
        return None
    size = 2 ** (bits - prefix)
    usable = size - 2 if family == 4 else size - 1
    if usable < MIN_USABLE:
        reserved_note = "network and broadcast" if family == 4 else "the subnet-router anycast address"
        errors.append(
            "%s: /%d leaves 2^(%d-%d) = %d address%s, %d usable after %s; a node needs at least %d "
            "(the gateway on the bridge and one pod): use /%d or shorter"
            % (var, prefix, bits, prefix, size, "" if size == 1 else "es", max(usable, 0), reserved_note,
               MIN_USABLE, bits - 2)
        )
        return None
    return prefix


def _intervals_overlap(a: "netaddr.IPNetwork", b: "netaddr.IPNetwork") -> bool:
    return a.version == b.version and a.first <= b.last and b.first <= a.last


class _Family:
    """Allocation bookkeeping for one address family of the cluster."""

    def __init__(self, cluster: "netaddr.IPNetwork", prefix: int, var: str):
        self.cluster = cluster
        self.prefix = prefix
        self.var = var
        self.block_size = 2 ** ((32 if cluster.version == 4 else 128) - prefix)
        self.total = 2 ** (prefix - cluster.prefixlen)
        self.owner: Dict[int, str] = {}  # block start -> node
        self.released: List[int] = []  # block starts, oldest release first

    def block(self, start: int) -> "netaddr.IPNetwork":
        return netaddr.IPNetwork((start, self.prefix), version=self.cluster.version)

    def describe(self) -> str:
        return "%s (%s)" % (self.cluster, self.var)

    def allocate(self, names: Sequence[str]) -> Dict[str, int]:
        """Lowest never-used blocks first, then released ones, oldest first."""
        taken = set(self.owner)
        released = set(self.released)
        result: Dict[str, int] = {}
        pending = list(names)
        index = 0
        start = self.cluster.first
        while pending and index < self.total:
            block = start + index * self.block_size
            index += 1
            if block in taken or block in released:
                continue
            result[pending.pop(0)] = block
        for block in list(self.released):
            if not pending:
                break
            if block in taken:
                continue
            result[pending.pop(0)] = block
            self.released.remove(block)
        return result


def _node_ips(node: NodeInput, errors: List[str]) -> Tuple[Dict[int, "netaddr.IPAddress"], Dict[int, "netaddr.IPNetwork"]]:
    """The node's first address of each family and, where known, its network."""
    addresses: Dict[int, netaddr.IPAddress] = {}
    networks: Dict[int, netaddr.IPNetwork] = {}
    if node.has_node_ip:
        for i, raw in enumerate(as_list(node.node_ip)):
            what = "host %s: podnet_node_ip%s" % (node.name, "" if isinstance(node.node_ip, str) else "[%d]" % i)
            try:
                iface = to_ipnetwork(str(raw).strip())
                if "/" not in str(raw):
                    addr, net = iface.ip, None
                else:
                    addr, net = iface.ip, iface.cidr
            except (netaddr.AddrFormatError, ValueError, TypeError):
                errors.append("%s: %r is not an IP address (address or address/prefix)" % (what, raw))
                continue
            if addr.version not in addresses:
                addresses[addr.version] = addr
                if net is not None:
                    networks[addr.version] = net
        return addresses, networks
    facts = {4: node.fact_ipv4, 6: node.fact_ipv6}
    for family in FAMILIES:
        other = facts[10 - family]
        if (not isinstance(facts[family], Mapping) or not facts[family].get("address")) and isinstance(other, Mapping):
            facts[family] = interface_address(node.fact_interfaces, other.get("interface"), family)
    for fact in facts.values():
        if not isinstance(fact, Mapping) or not fact.get("address"):
            continue
        try:
            addr = netaddr.IPAddress(str(fact["address"]).split("%", maxsplit=1)[0])
        except (netaddr.AddrFormatError, ValueError, TypeError):
            continue
        addresses.setdefault(addr.version, addr)
        try:
            if addr.version == 4 and fact.get("netmask"):
                networks[4] = netaddr.IPNetwork("%s/%s" % (addr, fact["netmask"])).cidr
            elif addr.version == 6 and fact.get("prefix"):
                networks[6] = netaddr.IPNetwork("%s/%s" % (addr, fact["prefix"])).cidr
        except (netaddr.AddrFormatError, ValueError, TypeError):
            pass
    return addresses, networks


def default_interfaces(facts: Any) -> Dict[str, Any]:
    """{name: facts} of the interfaces that the network facts' default_ipv4 and default_ipv6 name (no more: a node's
    facts hold every interface, and only these matter to the plan)."""
    out: Dict[str, Any] = {}
    if not isinstance(facts, Mapping):
        return out
    for key in ("default_ipv4", "default_ipv6"):
        fact = facts.get(key)
        name = fact.get("interface") if isinstance(fact, Mapping) else None
        if not name:
            continue
        for spelling in (str(name), str(name).replace(":", "_")):
            if isinstance(facts.get(spelling), Mapping):
                out[str(name)] = facts[spelling]
                break
    return out


def interface_address(interfaces: Optional[Mapping[str, Any]], name: Any, family: int) -> Optional[Dict[str, Any]]:
    """The first global address of ``family`` on interface ``name``, from its facts, as a default_ipvN-like dict.

    Used when the node has no default route of that family (an IPv6 router away, its advertisements with router
    lifetime 0): the node address of that family is then the one on the interface that carries the other family's
    default route, which is where the default route's source address was.
    """
    if not isinstance(interfaces, Mapping) or not name:
        return None
    entry = interfaces.get(str(name)) or interfaces.get(str(name).replace(":", "_"))
    if not isinstance(entry, Mapping):
        return None
    if family == 4:
        candidates = [entry.get("ipv4")] + list(entry.get("ipv4_secondaries") or [])
        for item in candidates:
            if isinstance(item, Mapping) and item.get("address") and not str(item["address"]).startswith("127."):
                return {"address": item["address"], "netmask": item.get("netmask"), "interface": name}
        return None
    for item in entry.get("ipv6") or []:
        if isinstance(item, Mapping) and item.get("address") and item.get("scope", "global") == "global":
            return {"address": item["address"], "prefix": item.get("prefix"), "interface": name}
    return None


def parse_state(state: Any, source: str = "state file") -> Tuple[Dict[str, List["netaddr.IPNetwork"]], List["netaddr.IPNetwork"]]:
    """Recorded assignments and released blocks; PlanError when the state is not valid."""
    if state is None:
        return {}, []
    errors: List[str] = []
    if not isinstance(state, Mapping):
        raise PlanError(["%s is not valid: its top level must be a mapping with key 'nodes', not %s"
                         % (source, type(state).__name__)])
    version = state.get("version", STATE_VERSION)
    if version != STATE_VERSION:
        errors.append("%s is not valid: version %r is not supported (this planner writes version %d)"
                      % (source, version, STATE_VERSION))
    raw_nodes = state.get("nodes", {})
    if raw_nodes is None:
        raw_nodes = {}
    if not isinstance(raw_nodes, Mapping):
        raise PlanError(errors + ["%s is not valid: 'nodes' must map each inventory hostname to a list of "
                                  "pod CIDRs, not %s" % (source, type(raw_nodes).__name__)])
    nodes: Dict[str, List[netaddr.IPNetwork]] = {}
    seen: List[Tuple[netaddr.IPNetwork, str]] = []
    for name, cidrs in raw_nodes.items():
        if not isinstance(cidrs, (list, tuple)) or not cidrs:
            errors.append("%s is not valid: nodes.%s must be a non-empty list of pod CIDRs, not %r"
                          % (source, name, cidrs))
            continue
        nets = []
        for i, cidr in enumerate(cidrs):
            net = parse_network(cidr, "%s is not valid: nodes.%s[%d]" % (source, name, i), errors)
            if net is not None:
                if any(n.version == net.version for n in nets):
                    errors.append("%s is not valid: nodes.%s records two %s pod CIDRs (%s and %s)"
                                  % (source, name, FAMILY_NAME[net.version],
                                     [n for n in nets if n.version == net.version][0], net))
                    continue
                nets.append(net)
                seen.append((net, str(name)))
        nodes[str(name)] = nets
    seen.sort(key=lambda item: (item[0].version, item[0].first))
    for (a, an), (b, bn) in zip(seen, seen[1:]):
        if _intervals_overlap(a, b):
            errors.append("%s is not valid: nodes.%s (%s) and nodes.%s (%s) overlap" % (source, an, a, bn, b))
    released: List[netaddr.IPNetwork] = []
    raw_released = state.get("released", []) or []
    if not isinstance(raw_released, (list, tuple)):
        errors.append("%s is not valid: 'released' must be a list of CIDRs" % source)
    else:
        for i, cidr in enumerate(raw_released):
            net = parse_network(cidr, "%s is not valid: released[%d]" % (source, i), errors)
            if net is not None:
                released.append(net)
    if errors:
        raise PlanError(errors)
    return nodes, released


def _check_config(config: PlanConfig, errors: List[str]):
    clusters: Dict[int, netaddr.IPNetwork] = {}
    cluster_list = as_list(config.cluster_cidrs)
    if not cluster_list:
        errors.append("podnet_cluster_cidrs: empty; give one IPv4 and/or one IPv6 network")
    named: List[Tuple[str, netaddr.IPNetwork]] = []
    for i, raw in enumerate(cluster_list):
        net = parse_network(raw, "podnet_cluster_cidrs[%d]" % i, errors)
        if net is None:
            continue
        if net.version in clusters:
            errors.append(
                "podnet_cluster_cidrs: two %s networks (%s and %s); give at most one per family (dual-stack is "
                "one IPv4 and one IPv6)" % (FAMILY_NAME[net.version], clusters[net.version], net))
            continue
        clusters[net.version] = net
        named.append(("podnet_cluster_cidrs[%d] %s" % (i, net), net))
    prefixes: Dict[int, int] = {}
    for family, raw in ((4, config.node_prefix_ipv4), (6, config.node_prefix_ipv6)):
        if family not in clusters:
            continue
        prefix = parse_prefix(raw, family, errors)
        if prefix is None:
            continue
        cluster = clusters[family]
        if prefix <= cluster.prefixlen:
            errors.append(
                "%s: /%d is not longer than the cluster network %s (/%d, podnet_cluster_cidrs): each node's "
                "subnet must be a part of it, so the node prefix must be greater than %d"
                % (PREFIX_VAR[family], prefix, cluster, cluster.prefixlen, cluster.prefixlen))
            continue
        prefixes[family] = prefix
    extra: Dict[str, List[netaddr.IPNetwork]] = {}
    for var, values in (("podnet_service_cidrs", config.service_cidrs),
                        ("podnet_reserved_cidrs", config.reserved_cidrs)):
        extra[var] = []
        for i, raw in enumerate(as_list(values)):
            net = parse_network(raw, "%s[%d]" % (var, i), errors)
            if net is not None:
                extra[var].append(net)
                named.append(("%s[%d] %s" % (var, i, net), net))
    for i, (an, a) in enumerate(named):
        for bn, b in named[i + 1:]:
            if _intervals_overlap(a, b):
                errors.append("%s overlaps %s (addresses %s-%s are in both); cluster, service and reserved "
                              "networks must be disjoint"
                              % (bn, an, netaddr.IPAddress(max(a.first, b.first), a.version),
                                 netaddr.IPAddress(min(a.last, b.last), a.version)))
    return clusters, prefixes, extra


def config_errors(config: PlanConfig) -> List[str]:
    """Every problem of the cluster-wide variables alone (cluster, node prefixes, service and reserved networks),
    each naming the variable and the arithmetic; [] when they are valid. Needs no node and no state file: the
    controller checks these before any node is asked anything."""
    require_netaddr()
    errors: List[str] = []
    _check_config(config, errors)
    return errors


def departed_text(absent: Mapping[str, Sequence[str]], limit: int = 10) -> str:
    """``node (blocks), ...`` of recorded nodes gone from the inventory that keep their blocks."""
    names = sorted(absent, key=natural_key)
    text = ", ".join("%s (%s)" % (n, ", ".join(str(c) for c in absent[n])) for n in names[:limit])
    if len(names) > limit:
        text += " and %d more" % (len(names) - limit)
    return text


def departed_message(absent: Mapping[str, Sequence[str]]) -> str:
    """What a run says about recorded nodes missing from the inventory: who, their blocks, how to release them."""
    names = sorted(absent, key=natural_key)
    return ("%d node(s) recorded in the state file are not in the inventory and keep their pod subnets: %s. Once such "
            "a node is gone for good, release its blocks with podnet_release_nodes: [%s] (or every departed node's "
            "at once with podnet_plan_prune: true); while it may come back (a dynamic inventory that hides stopped "
            "instances), leave it" % (len(names), departed_text(absent), ", ".join(names[:10])))


def make_plan(config: PlanConfig, nodes: Sequence[NodeInput], state: Any = None,
              state_source: str = "state file") -> PlanResult:
    """Compute the whole plan or raise PlanError listing every problem."""
    require_netaddr()
    errors: List[str] = []
    clusters, prefixes, extra = _check_config(config, errors)
    try:
        recorded, released = parse_state(state, state_source)
    except PlanError as exc:
        errors.extend(exc.errors)
        recorded, released = {}, []
    if errors:
        raise PlanError(errors)

    names = [n.name for n in nodes]
    duplicates = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if duplicates:
        raise PlanError(["nodes listed twice: %s" % ", ".join(duplicates)])
    in_inventory = set(names)
    release = [str(n) for n in as_list(config.release)]
    wrong = [n for n in release if n in in_inventory]
    if wrong:
        raise PlanError(["podnet_release_nodes: %s %s in the inventory; only a node that left the inventory can "
                         "release its pod subnets (remove it from the inventory first)"
                         % (", ".join(wrong), "is" if len(wrong) == 1 else "are")])
    # Recorded nodes that are not in the inventory now and keep their blocks.
    absent = {owner: nets for owner, nets in recorded.items()
              if owner not in in_inventory and config.keep_absent and owner not in release}

    families: Dict[int, _Family] = {f: _Family(clusters[f], prefixes[f], "podnet_cluster_cidrs")
                                    for f in FAMILIES if f in clusters and f in prefixes}
    service_nets = extra["podnet_service_cidrs"]

    # Node IPs.
    node_addrs: Dict[str, Dict[int, netaddr.IPAddress]] = {}
    node_nets: Dict[str, Dict[int, netaddr.IPNetwork]] = {}
    ip_owner: Dict[netaddr.IPAddress, str] = {}
    for node in nodes:
        addrs, nets = _node_ips(node, errors)
        node_addrs[node.name], node_nets[node.name] = addrs, nets
        source = ("podnet_node_ip gives none" if node.has_node_ip else
                  "podnet_node_ip is unset and its facts give none (neither a default route of that family nor "
                  "an address of it on the interface of the other family's default route; facts are gathered for "
                  "the hosts of the play, so a host outside --limit needs podnet_node_ip)")
        for family in families:
            if family not in addrs and not (node.any_underlay and addrs):
                errors.append(
                    "host %s: no %s node IP: %s, and the cluster has the %s network %s; set "
                    "podnet_node_ip to the node's %s underlay address"
                    % (node.name, FAMILY_NAME[family], source, FAMILY_NAME[family], clusters[family],
                       FAMILY_NAME[family]))
        for family, addr in addrs.items():
            var = "podnet_node_ip" if node.has_node_ip else "its default %s address" % FAMILY_NAME[family]
            if family in clusters and addr in clusters[family]:
                errors.append("host %s: node IP %s (%s) lies inside the cluster network %s "
                              "(podnet_cluster_cidrs); pods and nodes must not share addresses"
                              % (node.name, addr, var, clusters[family]))
            for i, svc in enumerate(service_nets):
                if addr in svc:
                    errors.append("host %s: node IP %s (%s) lies inside the service network %s "
                                  "(podnet_service_cidrs[%d])" % (node.name, addr, var, svc, i))
            if addr in ip_owner:
                errors.append("hosts %s and %s have the same node IP %s" % (ip_owner[addr], node.name, addr))
            else:
                ip_owner[addr] = node.name

    # Explicit claims.
    explicit: Dict[str, Dict[int, netaddr.IPNetwork]] = {}
    for node in nodes:
        raw = node.pod_cidrs
        if raw is None or raw == [] or raw == "":
            continue
        claims: Dict[int, netaddr.IPNetwork] = {}
        for i, value in enumerate(as_list(raw)):
            what = "host %s: podnet_pod_cidrs%s" % (node.name, "" if isinstance(raw, str) else "[%d]" % i)
            net = parse_network(value, what, errors)
            if net is None:
                continue
            family = net.version
            if family not in clusters:
                errors.append("%s: %s is %s, but podnet_cluster_cidrs has no %s network (%s)"
                              % (what, net, FAMILY_NAME[family], FAMILY_NAME[family],
                                 ", ".join(str(c) for c in clusters.values())))
                continue
            if family not in families:
                continue
            fam = families[family]
            if net not in fam.cluster:
                errors.append("%s: %s lies outside the cluster network %s (podnet_cluster_cidrs)"
                              % (what, net, fam.cluster))
                continue
            if net.prefixlen != fam.prefix:
                errors.append("%s: %s is a /%d, but %s is %d: each node gets exactly one /%d of %s"
                              % (what, net, net.prefixlen, PREFIX_VAR[family], fam.prefix, fam.prefix, fam.cluster))
                continue
            if family in claims:
                errors.append("%s: a second %s subnet (%s, after %s); a node has one per family"
                              % (what, FAMILY_NAME[family], net, claims[family]))
                continue
            claims[family] = net
        explicit[node.name] = claims

    # Claims against each other and against the state.
    for family in families:
        spans = sorted(((c[family], name) for name, c in explicit.items() if family in c),
                       key=lambda item: (item[0].first, item[1]))
        for (a, an), (b, bn) in zip(spans, spans[1:]):
            if _intervals_overlap(a, b):
                errors.append("hosts %s and %s both claim %s in podnet_pod_cidrs" % (an, bn, b if a == b else "%s / %s" % (a, b)))
        recorded_spans = sorted(((n, owner) for owner, nets in recorded.items()
                                 if owner in in_inventory or owner in absent
                                 for n in nets if n.version == family), key=lambda item: item[0].first)
        for net, name in spans:
            for rnet, owner in recorded_spans:
                if owner != name and _intervals_overlap(net, rnet):
                    errors.append("host %s: podnet_pod_cidrs claims %s, but the state file assigns %s to host %s"
                                  % (name, net, rnet, owner))

    # What nodes hold already (probed when the state file does not record them): adopt it, never hand it on.
    adopted = _adopt(nodes, families, recorded, explicit, absent, config, errors)

    # Recorded assignments still valid for this configuration? A block that does not fit is planned anew when
    # the node was asked and holds nothing of it, or when re-addressing is confirmed; else the plan refuses.
    by_name = {n.name: n for n in nodes}
    replanned: Dict[str, List[netaddr.IPNetwork]] = {}
    for name in names:
        for net in recorded.get(name, []):
            problem = misfit(net, clusters, families)
            if problem is None:
                continue
            if config.allow_readdress or not holds(by_name[name].held, net):
                replanned.setdefault(name, []).append(net)
                continue
            errors.append("host %s: the state file assigns it %s, %s, and the node holds it; %s"
                          % (name, net, problem, readdress_advice(config, problem)))
    if errors:
        raise PlanError(errors)

    # Allocation.
    assigned: Dict[str, Dict[int, netaddr.IPNetwork]] = {name: {} for name in names}
    newly_released: Dict[str, List[str]] = {}
    for family, fam in families.items():
        for net in released:
            if net.version == family and net in fam.cluster and net.prefixlen == fam.prefix \
                    and net.first not in fam.released:
                fam.released.append(net.first)
    for name in names:
        for family, net in explicit.get(name, {}).items():
            assigned[name][family] = net
        for net in recorded.get(name, []):
            if net.version in families and net.version not in assigned[name] and net not in replanned.get(name, ()):
                assigned[name][net.version] = net
        for family, net in adopted.get(name, {}).items():
            assigned[name].setdefault(family, net)
    # Blocks left behind: by nodes gone from the inventory, or replaced by an explicit claim.
    for owner in sorted(recorded, key=natural_key):
        for net in recorded[owner]:
            if owner in absent:
                if net.version in families and net in families[net.version].cluster:
                    families[net.version].owner[net.first] = owner
                continue
            still = owner in in_inventory and assigned[owner].get(net.version) == net
            if not still and net.version in families:
                newly_released.setdefault(owner, []).append(str(net))
                fam = families[net.version]
                if net in fam.cluster and net.prefixlen == fam.prefix and net.first not in fam.released:
                    fam.released.append(net.first)
    added: Dict[str, List[str]] = {}
    for family, fam in families.items():
        for name in names:
            if family in assigned[name]:
                net = assigned[name][family]
                fam.owner[net.first] = name
                if net.first in fam.released:
                    fam.released.remove(net.first)
        need = sorted((n for n in names if family not in assigned[n]), key=natural_key)
        free = fam.total - len(fam.owner)
        if len(need) > free:
            departed = {owner: [str(n) for n in nets if n.version == family] for owner, nets in absent.items()}
            departed = {owner: nets for owner, nets in departed.items() if nets}
            held = ""
            if departed:
                held = (". %d of the assigned blocks are held by node(s) no longer in the inventory: %s; if they are "
                        "gone for good, release them with podnet_release_nodes: [%s] (or podnet_plan_prune: true)"
                        % (sum(len(v) for v in departed.values()), departed_text(departed),
                           ", ".join(sorted(departed, key=natural_key)[:10])))
            errors.append(
                "podnet_cluster_cidrs: %s holds %d /%d blocks (2^(%d-%d), %s=%d); %d are assigned and %d more "
                "node%s need%s one (%s): %d short. Use a larger cluster network or a longer %s%s"
                % (fam.cluster, fam.total, fam.prefix, fam.prefix, fam.cluster.prefixlen, PREFIX_VAR[family],
                   fam.prefix, len(fam.owner), len(need), "" if len(need) == 1 else "s",
                   "s" if len(need) == 1 else "", _short_list(need), len(need) - free, PREFIX_VAR[family], held))
            continue
        for name, start in fam.allocate(need).items():
            net = fam.block(start)
            assigned[name][family] = net
            fam.owner[start] = name
            added.setdefault(name, []).append(str(net))
    if errors:
        raise PlanError(errors)

    plans: Dict[str, NodePlan] = {}
    for name in names:
        nets = [assigned[name][f] for f in FAMILIES if f in assigned[name]]
        gateways = [fmt_address(n.first + 1, n.version) for n in nets]
        addrs = node_addrs[name]
        plans[name] = NodePlan(
            name=name,
            node_ips=[fmt_address(int(addrs[f]), f) for f in FAMILIES if f in addrs],
            node_cidrs=[fmt_network(node_nets[name][f]) for f in FAMILIES if f in node_nets[name]],
            pod_cidrs=[fmt_network(n) for n in nets],
            gateways=gateways,
            bridge_addresses=["%s/%d" % (g, n.prefixlen) for g, n in zip(gateways, nets)],
        )
    kept = {owner: [str(n) for n in nets] for owner, nets in absent.items()}
    new_state = {
        "version": STATE_VERSION,
        "nodes": {name: (plans[name].pod_cidrs if name in plans else kept[name])
                  for name in sorted(list(names) + list(kept), key=natural_key)},
        "released": [str(fam.block(b)) for f, fam in families.items() for b in fam.released],
    }
    return PlanResult(
        cluster_cidrs=[str(clusters[f]) for f in FAMILIES if f in clusters],
        service_cidrs=[str(n) for n in service_nets],
        reserved_cidrs=[str(n) for n in extra["podnet_reserved_cidrs"]],
        node_prefixes=dict(prefixes),
        nodes=plans,
        state=new_state,
        added=added,
        released=newly_released,
        absent=kept,
    )


def _adopt(nodes: Sequence[NodeInput], families: Dict[int, "_Family"], recorded: Mapping[str, Any],
           explicit: Mapping[str, Any], absent: Mapping[str, Any], config: PlanConfig,
           errors: List[str]) -> Dict[str, Dict[int, "netaddr.IPNetwork"]]:
    """{node: {family: block}} adopted from what unrecorded nodes hold; conflicts go to ``errors``.

    A node that holds its own recorded block adopts nothing: whether that block still fits is judged with the
    recorded blocks."""
    allow = config.allow_readdress
    advice = readdress_advice(config)
    adopted: Dict[str, Dict[int, netaddr.IPNetwork]] = {}
    holder: Dict[Tuple[int, int], str] = {}
    owners: Dict[Tuple[int, int], str] = {}
    for owner, nets in recorded.items():
        for net in nets:
            owners[(net.version, net.first)] = owner
    for name, claims in explicit.items():
        for net in claims.values():
            owners[(net.version, net.first)] = name
    for node in nodes:
        held = as_list(node.held)
        if not held:
            continue
        for value in held:
            try:
                net = to_ipnetwork(str(value)).cidr
            except (netaddr.AddrFormatError, ValueError, TypeError):
                continue
            fam = families.get(net.version)
            if fam is None or net not in fam.cluster:
                continue
            if net in recorded.get(node.name, ()):
                continue
            net = _gateway_block(str(value), net, fam)
            if net in recorded.get(node.name, ()):
                continue
            what = "host %s holds %s (its record or the gateway on its bridge)" % (node.name, net)
            if net.prefixlen != fam.prefix:
                if not allow:
                    errors.append("%s, a /%d, but %s is %d: %s"
                                  % (what, net.prefixlen, PREFIX_VAR[net.version], fam.prefix,
                                     readdress_advice(config, "but podnet_node_prefix")))
                continue
            key = (net.version, net.first)
            if key in holder and holder[key] != node.name:
                errors.append("hosts %s and %s both hold %s: one of them must be re-addressed by hand"
                              % (holder[key], node.name, net))
                continue
            holder[key] = node.name
            owner = owners.get(key)
            mine = [n for n in list(recorded.get(node.name, [])) + list(explicit.get(node.name, {}).values())
                    if n.version == net.version]
            if owner is not None and owner != node.name:
                if not allow:
                    errors.append("%s, which the %s gives to host %s%s: %s"
                                  % (what, "inventory (podnet_pod_cidrs)" if owner in explicit else "state file",
                                     owner, " (absent from this inventory)" if owner in absent else "", advice))
                continue
            if mine and mine[0] != net:
                if not allow:
                    errors.append("%s, but the plan gives it %s: %s" % (what, mine[0], advice))
                continue
            if not mine:
                adopted.setdefault(node.name, {})[net.version] = net
    return adopted


def misfit(net: "netaddr.IPNetwork", clusters: Mapping[int, Any], families: Mapping[int, Any]) -> Optional[str]:
    """Why a recorded block does not fit the configuration (a phrase), or None when it does."""
    if net.version not in clusters:
        return "but podnet_cluster_cidrs has no %s network any more" % FAMILY_NAME[net.version]
    fam = families.get(net.version)
    if fam is None:
        return None
    if net not in fam.cluster:
        return "which lies outside the cluster network %s (podnet_cluster_cidrs)" % fam.cluster
    if net.prefixlen != fam.prefix:
        return "a /%d, but %s is %d" % (net.prefixlen, PREFIX_VAR[net.version], fam.prefix)
    return None


def holds(held: Any, net: "netaddr.IPNetwork") -> bool:
    """Whether what a node was found to hold (None: it was not asked) covers ``net``; not asked counts as held."""
    if held is None:
        return True
    for value in as_list(held):
        try:
            found = to_ipnetwork(str(value))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            continue
        if found.version == net.version and (found.ip in net or _intervals_overlap(found.cidr, net)):
            return True
    return False


def readdress_advice(config: PlanConfig, problem: str = "") -> str:
    """What to do about a node that would lose a block it holds, for the playbook at hand."""
    if config.read_only:
        return ("your variables differ from the recorded plan (the plan podnet.cluster.site applied): run this "
                "playbook with the variables of that run, or apply the change with podnet.cluster.site first "
                "(docs/operations.md)")
    what = ("removing a family" if "no " in problem and "any more" in problem else
            "changing the cluster network" if "outside the cluster network" in problem else
            "changing the node prefix" if "but podnet_node_prefix" in problem else "moving a block")
    return ("%s re-addresses its pods: run podnet.cluster.site with -e podnet_allow_readdress=true to do it "
            "deliberately (docs/operations.md)" % what)


def recorded_misfits(config: PlanConfig, state: Any, names: Iterable[str]) -> List[str]:
    """The nodes of ``names`` whose recorded blocks do not fit ``config``: the plan asks them what they hold, so
    that a block no node holds yet can be planned anew. [] when the configuration or the state is not valid (the
    plan reports that)."""
    require_netaddr()
    errors: List[str] = []
    clusters, prefixes, _extra = _check_config(config, errors)
    if errors:
        return []
    try:
        recorded, _released = parse_state(state)
    except PlanError:
        return []
    families = {f: _Family(clusters[f], prefixes[f], "podnet_cluster_cidrs")
                for f in FAMILIES if f in clusters and f in prefixes}
    wanted = set(names)
    return [name for name in sorted(recorded, key=natural_key)
            if name in wanted and any(misfit(n, clusters, families) for n in recorded[name])]


def _gateway_block(value: str, net: "netaddr.IPNetwork", fam: Any) -> "netaddr.IPNetwork":
    """The node block a held gateway stands for: on a shared segment (fabric l2_bridge) the gateway carries the
    cluster network's prefix, so the block is the node-prefix network whose first host address it is."""
    if "/" not in value or net.prefixlen >= fam.prefix:
        return net
    ip = netaddr.IPAddress(value.split("/")[0])
    block = netaddr.IPNetwork("%s/%d" % (ip, fam.prefix)).cidr
    return block if int(ip) == block.first + 1 else net


def _short_list(names: Iterable[str], limit: int = 10) -> str:
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return "%s and %d more" % (", ".join(names[:limit]), len(names) - limit)
