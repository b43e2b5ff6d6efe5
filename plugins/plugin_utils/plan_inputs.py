# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""What the pod-CIDR planner reads, checked: each node's addresses (inventory or facts), the state file, and the
cluster-wide variables. Pure functions, no Ansible, no I/O; every problem is an error line naming the variable, the
host and the arithmetic (plugin_utils/plan collects them into one PlanError).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_model import (
    FAMILIES,
    FAMILY_NAME,
    PREFIX_VAR,
    STATE_VERSION,
    as_list,
    _intervals_overlap,
    netaddr,
    NodeInput,
    parse_network,
    parse_prefix,
    PlanConfig,
    PlanError,
    require_netaddr,
    to_ipnetwork,
)


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
