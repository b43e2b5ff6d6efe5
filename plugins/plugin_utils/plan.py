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

The planner's data classes and network parsing are plugin_utils/plan_model, its checked inputs (node addresses,
state file, cluster variables) plugin_utils/plan_inputs.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.podnet.cluster.plugins.module_utils.text import names as names_text
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_inputs import (
    _check_config,
    _node_ips,
    parse_state,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_model import (
    FAMILIES,
    FAMILY_NAME,
    PREFIX_VAR,
    STATE_VERSION,
    as_list,
    fmt_address,
    fmt_network,
    _intervals_overlap,
    natural_key,
    netaddr,
    NodeInput,
    NodePlan,
    parse_network,
    PlanConfig,
    PlanError,
    PlanResult,
    require_netaddr,
    to_ipnetwork,
)


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


def departed_text(absent: Mapping[str, Sequence[str]], limit: int = 10) -> str:
    """``node (blocks), ...`` of recorded nodes gone from the inventory that keep their blocks."""
    return names_text(("%s (%s)" % (n, ", ".join(str(c) for c in absent[n])) for n in sorted(absent, key=natural_key)),
                      limit)


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


def _short_list(items: Iterable[str], limit: int = 10) -> str:
    return names_text(items, limit)
