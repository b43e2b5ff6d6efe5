# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The pod-CIDR planner's vocabulary: its inputs and results as data classes, its error, and the parsing and
formatting of networks and addresses it shares with the rest of the controller. Pure functions, no Ansible, no
I/O; netaddr is imported here, once, for the planner's modules (``require_netaddr`` says when it is missing).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

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
