# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Pure logic of podnet.cluster.gce_routes: route names, ownership, the plan, and its messages.

Standard library only and free of I/O, so that unit tests reach every rule; the names and URLs of routes,
networks and instances are plugins/module_utils/gce_names.py (re-exported here). The module
(plugins/modules/gce_routes.py) reads the API through plugins/module_utils/gce_client.py (which also
tells what the API's errors mean), hands the answers to these functions, and carries the plan out with
plugins/module_utils/gce_apply.py.

Compute Engine facts these functions rely on (Compute Engine v1 REST API, Route and Instance):
  * a route name is 1-63 characters of ``[a-z]([-a-z0-9]*[a-z0-9])?`` and unique in the project
    (not only in the network);
  * ``destRange`` accepts IPv4 and IPv6 ranges; IPv6 ranges are displayed RFC 5952 compressed;
  * ``nextHopInstance`` and ``network`` accept full or partial URLs; responses carry full URLs
    (``https://www.googleapis.com/compute/v1/projects/...``);
  * routes are immutable: a changed next hop means a new route.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.podnet.cluster.plugins.module_utils.text import network_problem
from ansible_collections.podnet.cluster.plugins.module_utils.gce_names import (
    IPV6_STACKS,
    _INSTANCE_SHORT,
    _RESOURCE_NAME,
    GceInputError,
    Network,
    instance_path,
    limit,
    path_or_none,
    route_names,
    short_instance,
)


# ------------------------------------------------------------------------------------- wanted routes

@dataclass(frozen=True)
class WantedRoute:
    dest: Network
    node: str
    instance: str          # projects/P/zones/Z/instances/I
    priority: int
    names: Tuple[str, str]

    def body(self, name: str, network: str, description: str) -> Dict[str, Any]:
        """The routes.insert request body."""
        return {
            "name": name,
            "network": network,
            "destRange": str(self.dest),
            "priority": self.priority,
            "nextHopInstance": self.instance,
            "description": description,
        }


def parse_wanted(specs: Sequence[Mapping[str, Any]], project: str, prefix: str, priority: int
                 ) -> Dict[Network, WantedRoute]:
    """The module's ``routes`` option (one entry per node) -> {destination: WantedRoute}.

    Raises GceInputError listing every problem (node named in each) before any API call.
    """
    problems: List[str] = []
    wanted: Dict[Network, WantedRoute] = {}
    nodes_seen: Dict[str, int] = {}
    instance_owner: Dict[str, str] = {}
    names_seen: Dict[str, Network] = {}
    for idx, spec in enumerate(specs or []):
        node = str(spec.get("node") or "").strip()
        label = "node %s" % node if node else "routes[%d]" % idx
        if not node:
            problems.append("routes[%d]: node is empty" % idx)
            continue
        if node in nodes_seen:
            problems.append("node %s is listed twice (routes[%d] and routes[%d])" % (node, nodes_seen[node], idx))
            continue
        nodes_seen[node] = idx
        try:
            path = instance_path(str(spec.get("instance") or node), spec.get("zone"), project)
        except ValueError as exc:
            problems.append("%s: %s (set its instance and zone)" % (label, exc))
            continue
        if path in instance_owner:
            problems.append("%s: instance %s is also the instance of node %s" % (label, short_instance(path),
                                                                                 instance_owner[path]))
            continue
        instance_owner[path] = node
        inst_name = path.rsplit("/", 1)[-1]
        if not _RESOURCE_NAME.match(inst_name):
            problems.append("%s: instance name %r is not a valid Compute Engine name" % (label, inst_name))
        ranges = spec.get("dest_ranges") or []
        if isinstance(ranges, str):
            ranges = [ranges]
        for text in ranges:
            text = str(text).strip()
            problem = network_problem(text, "dest_ranges item")
            if problem:
                problems.append("%s: %s" % (label, problem))
                continue
            net = ipaddress.ip_network(text)
            if net in wanted:
                problems.append("%s: destination %s is also wanted for node %s" % (label, net, wanted[net].node))
                continue
            names = route_names(prefix, net)
            clash = [n for n in names if n in names_seen]
            if clash:
                problems.append("%s: route name %s for %s collides with the name for %s"
                                % (label, clash[0], net, names_seen[clash[0]]))
                continue
            for n in names:
                names_seen[n] = net
            wanted[net] = WantedRoute(dest=net, node=node, instance=path, priority=priority, names=names)
    if problems:
        raise GceInputError("invalid routes", problems)
    return wanted


# ----------------------------------------------------------------------------------- existing routes

@dataclass(frozen=True)
class ExistingRoute:
    name: str
    dest: Optional[Network]
    network: Optional[str]      # projects/P/global/networks/N, None if unparseable
    instance: Optional[str]     # projects/P/zones/Z/instances/I, None for other next hops
    priority: Optional[int]
    description: str
    other_next_hop: Optional[str] = None
    tags: Tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


def parse_route(raw: Mapping[str, Any], project: str) -> ExistingRoute:
    """A route as the API returns it -> ExistingRoute (URLs reduced to paths, destRange parsed)."""
    try:
        dest = ipaddress.ip_network(str(raw.get("destRange", "")), strict=False)
    except ValueError:
        dest = None
    network = path_or_none(raw.get("network"), "network")
    instance = path_or_none(raw.get("nextHopInstance"), "instance")
    if instance is None and raw.get("nextHopInstance"):
        m = _INSTANCE_SHORT.match(str(raw["nextHopInstance"]).strip())
        if m:
            instance = "projects/%s/zones/%s/instances/%s" % (project, m.group(1), m.group(2))
    other = None
    for key in ("nextHopIp", "nextHopGateway", "nextHopIlb", "nextHopVpnTunnel", "nextHopNetwork", "nextHopPeering",
                "nextHopHub"):
        if raw.get(key):
            other = "%s=%s" % (key, raw[key])
            break
    try:
        priority: Optional[int] = int(raw["priority"]) if raw.get("priority") is not None else 1000
    except (TypeError, ValueError):
        priority = None
    return ExistingRoute(name=str(raw.get("name", "")), dest=dest, network=network, instance=instance,
                         priority=priority, description=str(raw.get("description") or ""),
                         other_next_hop=other, tags=tuple(raw.get("tags") or ()), raw=raw)


def is_owned(route: ExistingRoute, prefix: str, marker: str, network: str) -> bool:
    """Ours only when all three say so: the network, the description marker, and the name.

    The name must be one of the two names this collection gives the route's own destination, so a
    route of another cluster whose prefix merely starts with ours ('podnet-prod-...') is not ours.
    """
    if route.network != network or route.description != marker or route.dest is None:
        return False
    return route.name in route_names(prefix, route.dest)


def route_matches(route: ExistingRoute, want: WantedRoute, network: str, marker: str) -> bool:
    """Whether an existing route is exactly the wanted one (any of its two names)."""
    return (route.network == network and route.description == marker and route.dest == want.dest
            and route.instance == want.instance and route.other_next_hop is None
            and route.priority == want.priority and not route.tags and route.name in want.names)


def describe(route: Union[ExistingRoute, WantedRoute], name: Optional[str] = None) -> str:
    """One line for messages and the diff: 'NAME DEST via ZONE/INSTANCE priority P'."""
    if isinstance(route, WantedRoute):
        return "%s %s via %s priority %d" % (name or route.names[0], route.dest, short_instance(route.instance),
                                             route.priority)
    hop = short_instance(route.instance) if route.instance else (route.other_next_hop or "-")
    return "%s %s via %s priority %s" % (route.name, route.dest if route.dest is not None else
                                         route.raw.get("destRange", "?"), hop, route.priority)


def describe_foreign(route: ExistingRoute) -> str:
    """A foreign route with what makes it foreign."""
    bits = [describe(route), "network %s" % (route.network or route.raw.get("network") or "-")]
    bits.append("description %r" % route.description)
    return ", ".join(bits)


def _sort_key(item: Tuple[Optional[Network], str]) -> Tuple[int, bytes, int, str]:
    net, name = item
    if net is None:
        return (9, b"", 0, name)
    return (net.version, net.network_address.packed, net.prefixlen, name)


# ---------------------------------------------------------------------------------------------- plan

@dataclass
class Insert:
    name: str
    want: WantedRoute
    replaces: List[ExistingRoute] = field(default_factory=list)


@dataclass
class Delete:
    route: ExistingRoute
    reason: str           # stale | replaced | duplicate | absent | blocking
    node: Optional[str] = None


@dataclass
class Plan:
    inserts: List[Insert] = field(default_factory=list)
    deletes: List[Delete] = field(default_factory=list)
    pre_deletes: List[Delete] = field(default_factory=list)
    keep: List[Tuple[ExistingRoute, WantedRoute]] = field(default_factory=list)
    owned: List[ExistingRoute] = field(default_factory=list)
    conflicts: List[str] = field(default_factory=list)
    node_of: Dict[Network, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.inserts or self.deletes or self.pre_deletes)

    def _node(self, dest: Optional[Network]) -> str:
        node = self.node_of.get(dest) if dest is not None else None
        return "  (%s)" % node if node else ""

    def before_lines(self) -> List[str]:
        """The owned routes now, one line each; a destination still wanted names its node."""
        items = sorted(((r.dest, describe(r) + self._node(r.dest)) for r in self.owned), key=_sort_key)
        return [text for _unused, text in items]

    def after_lines(self) -> List[str]:
        """The owned routes after the plan, one line each, with their node."""
        items = [(r.dest, describe(r) + self._node(r.dest)) for r, _w in self.keep]
        items += [(i.want.dest, describe(i.want, i.name) + self._node(i.want.dest)) for i in self.inserts]
        return [text for _unused, text in sorted(items, key=_sort_key)]


def plan_routes(existing: Iterable[ExistingRoute], wanted: Mapping[Network, WantedRoute], prefix: str,
                marker: str, network: str, state: str = "present") -> Plan:
    """Diff the routes listed under our prefix against the wanted ones.

    * every owned route that is exactly wanted is kept (a second owned route to the same
      destination is a duplicate and deleted);
    * a wanted destination with no exact route gets an insert under whichever of its two names is
      free; owned routes to it are deleted only after the insert (make-before-break). Only if both
      names hold wrong owned routes (a run cut short between insert and delete) is one deleted first;
    * owned routes to destinations no longer wanted are deleted (stale), all of them when absent;
    * a route we do not own that holds one of our names is a conflict: it is never touched, and
      the caller fails before any write.
    """
    plan = Plan(node_of={dest: want.node for dest, want in wanted.items()})
    by_name: Dict[str, ExistingRoute] = {}
    owned_by_dest: Dict[Network, List[ExistingRoute]] = {}
    for route in existing:
        by_name[route.name] = route
        if is_owned(route, prefix, marker, network):
            plan.owned.append(route)
            if route.dest is None:  # is_owned() holds only routes with a destination
                raise AssertionError("owned route %s has no destination" % route.name)
            owned_by_dest.setdefault(route.dest, []).append(route)

    if state == "absent":
        plan.deletes = [Delete(r, "absent", None) for r in sorted(plan.owned, key=lambda r: r.name)]
        return plan

    for dest in sorted(wanted, key=lambda n: (n.version, n.network_address.packed, n.prefixlen)):
        want = wanted[dest]
        blocked = False
        for name in want.names:
            holder = by_name.get(name)
            if holder is not None and not is_owned(holder, prefix, marker, network):
                blocked = True
                plan.conflicts.append(
                    "node %s: route %s (wanted for %s) already exists and is not owned by podnet.cluster here: %s"
                    % (want.node, name, dest, describe_foreign(holder)))
        if blocked:
            continue
        ours = sorted(owned_by_dest.get(dest, []), key=lambda r: (r.name != want.names[0], r.name))
        exact = [r for r in ours if route_matches(r, want, network, marker)]
        if exact:
            plan.keep.append((exact[0], want))
            plan.deletes += [Delete(r, "duplicate", want.node) for r in ours if r is not exact[0]]
            continue
        used = {r.name for r in ours}
        free = [n for n in want.names if n not in used]
        if free:
            plan.inserts.append(Insert(free[0], want, list(ours)))
            plan.deletes += [Delete(r, "replaced", want.node) for r in ours]
        else:
            # both names hold wrong owned routes: free the alternate first, keep the primary until the end
            blocking = next(r for r in ours if r.name == want.names[1])
            plan.pre_deletes.append(Delete(blocking, "blocking", want.node))
            rest = [r for r in ours if r is not blocking]
            plan.inserts.append(Insert(want.names[1], want, rest))
            plan.deletes += [Delete(r, "replaced", want.node) for r in rest]

    for dest, routes in owned_by_dest.items():
        if dest not in wanted:
            plan.deletes += [Delete(r, "stale", None) for r in routes]
    plan.deletes.sort(key=lambda d: d.route.name)
    return plan


# ----------------------------------------------------------------------------------------- instances

def instance_problems(node: str, path: str, instance: Optional[Mapping[str, Any]], network: str,
                      families: Iterable[int]) -> List[str]:
    """What keeps ``instance`` (instances.get answer, None for 404) from being a next hop for ``node``.

    Checks canIpForward, a network interface in ``network``, and for IPv6 destinations an IPv6
    address on that interface (stackType IPV4_IPV6 or IPV6_ONLY).
    """
    where = "node %s: instance %s" % (node, short_instance(path))
    project = path.split("/")[1]
    if instance is None:
        return ["%s was not found in project %s; create it (with --can-ip-forward) or set podnet_gce_instance "
                "and podnet_gce_zone of %s to the node's VM" % (where, project, node)]
    problems = []
    if instance.get("canIpForward") is not True:
        problems.append(
            "%s has canIpForward %s: it drops packets for pod addresses. canIpForward can only be set when the VM "
            "is created: recreate it with IP forwarding (gcloud compute instances create %s --zone %s "
            "--can-ip-forward ...)" % (where, str(instance.get("canIpForward", False)).lower(),
                                       path.rsplit("/", 1)[-1], path.split("/")[3]))
    nics = instance.get("networkInterfaces") or []
    nic = next((n for n in nics if path_or_none(n.get("network"), "network") == network), None)
    if nic is None:
        seen = [path_or_none(n.get("network"), "network") or str(n.get("network")) for n in nics]
        problems.append(
            "%s has no network interface in %s (its interfaces are in: %s); the route's next hop must be a VM in "
            "that network: create the VM with an interface there or set podnet_gce_network"
            % (where, network, ", ".join(seen) or "none"))
    elif 6 in set(families):
        stack = nic.get("stackType") or "IPV4_ONLY"
        if stack not in IPV6_STACKS and not nic.get("ipv6Address"):
            problems.append(
                "%s: interface %s has stackType %s, but IPv6 pod routes through a next-hop instance need a "
                "dual-stack (IPV4_IPV6) or IPv6-only interface: put it in a dual-stack subnet and run gcloud "
                "compute instances network-interfaces update %s --zone %s --network-interface %s "
                "--stack-type IPV4_IPV6" % (where, nic.get("name", "nic0"), stack, path.rsplit("/", 1)[-1],
                                            path.split("/")[3], nic.get("name", "nic0")))
    return problems


def instances_message(problems: Sequence[str], network: str) -> str:
    return ("%d node instance problem(s) keep Compute Engine from routing pod subnets to the nodes in %s; "
            "nothing was changed: %s" % (len(problems), network, limit(problems, sep=" | ")))


def diff_text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)
