# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""What one node must look like, computed from the plan: pure functions, netaddr.

``node_network`` gives the bridge, sysctl and iptables chains of a node (its routes: document.peer_routes);
``runtime_config`` the Docker daemon options and the CNI conflist, including the
split of the node's subnet between Docker and host-local when both run.
The node role passes these data to the target-side modules unchanged.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import (
    PlanError,
    fmt_address,
    fmt_network,
    natural_key,
    require_netaddr,
    to_ipnetwork,
)

try:
    import netaddr
except ImportError:  # pragma: no cover - require_netaddr() reports it
    netaddr = None

MASQ_CHAIN = "PODNET-MASQ"
FORWARD_CHAIN = "PODNET-FORWARD"
ROUTE_PROTOCOL = 158
# Never masqueraded, as ip-masq-agent does: link-local traffic stays on the link.
LINK_LOCAL = {4: "169.254.0.0/16", 6: "fe80::/10"}
SYSCTL_FORWARD = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}
RUNTIMES = ("docker", "cni")
# Fabrics whose pods of all nodes share one L2 segment and one on-link prefix, the cluster network.
SHARED_SEGMENT = ("l2_bridge",)
# fabrics with an overlay device holding a VTEP address of each of the node's blocks (vtep_address)
OVERLAY = ("vxlan",)


def _node(plan: Mapping[str, Any], hostname: str) -> Mapping[str, Any]:
    nodes = plan.get("nodes") or {}
    if hostname not in nodes:
        raise PlanError(["host %s: not in the plan (podnet_plan.nodes); is it in the node group, and did "
                         "podnet.cluster.plan run in this play?" % hostname])
    return nodes[hostname]


def _by_family(cidrs: Sequence[str]) -> Dict[int, "netaddr.IPNetwork"]:
    out: Dict[int, netaddr.IPNetwork] = {}
    for cidr in cidrs:
        net = to_ipnetwork(str(cidr))
        out.setdefault(net.version, net)
    return out


# What each fabric keeps unmasqueraded besides the cluster networks, link-local and podnet_nonmasquerade_cidrs
# (docs/node.md says why):
#   l2_routes  the node addresses only: other hosts on the node's LAN have no route back to pod addresses;
#   router     the node networks: the router routes pod addresses back;
#   l2_bridge  the node networks: pods share the nodes' L2 segment;
#   gce        podnet_gce_network_cidrs (the source's "! -d <VPC range>"): the VPC routes pods back.
#   vxlan      nothing more: a pod's packet to a peer's node IP goes over the underlay, and the peer's strict
#              reverse-path filter drops it (its route to the pod's block is the overlay), so it leaves with the
#              node's address; pod -> pod and node -> pod (from the VTEP address) stay on the overlay.
FABRIC_KEEPS = {"l2_routes": "node_ips", "router": "node_cidrs", "l2_bridge": "node_cidrs", "gce": "gce",
                "vxlan": "none"}


def nonmasquerade_cidrs(plan: Mapping[str, Any], extra: Sequence[str] = (), fabric: Optional[str] = None,
                        fabric_cidrs: Sequence[str] = ()) -> Dict[int, List[str]]:
    """Destinations that keep the pod's address: cluster networks, link-local, what the fabric routes back, extra.

    ``fabric`` None keeps the node networks and the node addresses (the filter interface of 0.1).
    """
    keeps = FABRIC_KEEPS.get(fabric or "", "both")
    nets: Dict[int, list] = {4: [], 6: []}
    errors: List[str] = []
    sources = [("podnet_plan.cluster_cidrs", plan.get("cluster_cidrs") or []),
               ("podnet_nonmasquerade_cidrs", list(extra or []))]
    if keeps in ("node_cidrs", "both"):
        sources.append(("podnet_plan.node_cidrs", plan.get("node_cidrs") or []))
    if keeps == "gce":
        sources.append(("podnet_gce_network_cidrs", list(fabric_cidrs or [])))
    for var, values in sources:
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            errors.append("%s: %r is not a list of networks" % (var, values))
            continue
        for i, value in enumerate(values):
            try:
                net = to_ipnetwork(str(value).strip()).cidr
            except (netaddr.AddrFormatError, ValueError, TypeError):
                errors.append("%s[%d]: %r is not a network in CIDR form" % (var, i, value))
                continue
            nets[net.version].append(net)
    if errors:
        raise PlanError(errors)
    if keeps in ("node_ips", "both"):
        for entry in (plan.get("nodes") or {}).values():
            for ip in entry.get("node_ips") or []:
                addr = to_ipnetwork(str(ip))
                nets[addr.version].append(addr)
    families = {to_ipnetwork(c).version for c in plan.get("cluster_cidrs") or []}
    return {f: [fmt_network(n) for n in netaddr.cidr_merge(nets[f] + [to_ipnetwork(LINK_LOCAL[f])])]
            for f in sorted(families)}


def forward_rules(cluster_cidr: str, bridge: Optional[str]) -> List[Dict[str, str]]:
    """PODNET-FORWARD: accept what leaves the pod bridge from a pod and what goes out to a pod on it.

    Scoped to the bridge, so traffic that only passes through the node (VPN, second NIC) meets the host's
    own rules; the chain is appended to FORWARD (see forward_jump) so DOCKER-USER, KUBE-FORWARD's INVALID
    drop and host firewall rules before it still apply, and it still accepts under a FORWARD policy of DROP.
    """
    if not bridge:
        return [{"source": cluster_cidr, "comment": "pod traffic out", "jump": "ACCEPT"},
                {"destination": cluster_cidr, "comment": "traffic to pods", "jump": "ACCEPT"}]
    return [{"in_interface": bridge, "source": cluster_cidr, "comment": "pod traffic out", "jump": "ACCEPT"},
            {"out_interface": bridge, "destination": cluster_cidr, "comment": "traffic to pods", "jump": "ACCEPT"}]


def node_network(plan: Mapping[str, Any], hostname: str, nonmasquerade: Sequence[str] = (),
                 masquerade: bool = True, route_protocol: int = ROUTE_PROTOCOL, bridge: Optional[str] = None,
                 fabric: Optional[str] = None, fabric_cidrs: Sequence[str] = ()) -> Dict[str, Any]:
    """Bridge addresses, sysctls and iptables chains of one node (its peer routes: document.peer_routes).

    With ``bridge`` the FORWARD rules are scoped to it and appended to FORWARD; without it (the old filter
    interface) they match the cluster network on any interface and are inserted on top.
    """
    require_netaddr()
    node = _node(plan, hostname)
    pods = _by_family(node.get("pod_cidrs") or [])
    cluster = _by_family(plan.get("cluster_cidrs") or [])
    keep = nonmasquerade_cidrs(plan, nonmasquerade, fabric, fabric_cidrs) if masquerade else {}

    chains: List[Dict[str, Any]] = []
    for family in sorted(pods):
        cluster_cidr = fmt_network(cluster[family])
        forward = {
            "ip_version": family, "table": "filter",
            "chains": [{
                "name": FORWARD_CHAIN,
                "rules": forward_rules(cluster_cidr, bridge),
                "jumps": [{"from": "FORWARD", "position": "append" if bridge else "insert"}],
            }],
        }
        chains.append(forward)
        if masquerade:
            rules = [{"destination": cidr, "comment": "no masquerade", "jump": "RETURN"} for cidr in keep[family]]
            rules.append({"comment": "leaving the cluster", "jump": "MASQUERADE"})
            chains.append({
                "ip_version": family, "table": "nat",
                "chains": [{
                    "name": MASQ_CHAIN,
                    "rules": rules,
                    "jumps": [{"from": "POSTROUTING", "position": "append", "source": fmt_network(pods[family]),
                               "dst_type": "!LOCAL"}],
                }],
            })

    bridge_addresses = list(node.get("bridge_addresses") or [])
    if fabric in SHARED_SEGMENT:
        # One on-link prefix for the pods of every node: each gateway with the cluster network's prefix.
        bridge_addresses = ["%s/%d" % (fmt_address(pods[f].first + 1, f), cluster[f].prefixlen) for f in sorted(pods)]
    return {
        "bridge_addresses": bridge_addresses,
        "owned_cidrs": [fmt_network(cluster[f]) for f in sorted(cluster)],
        "sysctl": {SYSCTL_FORWARD[f]: "1" for f in sorted(pods)},
        "iptables": chains,
        "route_protocol": int(route_protocol),
    }


def _split(block: "netaddr.IPNetwork") -> List["netaddr.IPNetwork"]:
    return list(block.subnet(block.prefixlen + 1))


def runtime_config(plan: Mapping[str, Any], hostname: str, runtimes: Sequence[str], bridge: str = "cbr0",
                   mtu: Optional[int] = None, cni_network: str = "podnet", cni_version: str = "1.0.0",
                   hairpin: bool = True, fabric: Optional[str] = None) -> Dict[str, Any]:
    """Docker daemon options and the CNI conflist for one node.

    With both runtimes, each IPv4 block is split in halves: host-local hands out the lower half (after the
    gateway), Docker the upper half (``fixed-cidr``); with one runtime it gets the whole block. Docker gets
    IPv4 only: Docker 20.10 with ``ipv6`` rewrites the bridge's IPv6 addresses to its own gateway, which would
    take the pod gateway off ``cbr0``; IPv6 pods come from CNI.

    On a shared segment (``fabric`` l2_bridge) the pods' subnet is the cluster network (on-link to every pod
    of every node), and each node hands out only its own block: host-local's ``rangeStart``/``rangeEnd``,
    Docker's ``fixed-cidr``.

    With an overlay (``fabric`` vxlan) host-local's IPv6 range ends one address before the block's last, the
    overlay device's VTEP address (:func:`vtep_address`).
    """
    require_netaddr()
    errors: List[str] = []
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise PlanError(["host %s: podnet_runtimes: %s not supported (choose from %s)"
                         % (hostname, ", ".join(map(str, unknown)), ", ".join(RUNTIMES))])
    node = _node(plan, hostname)
    pods = _by_family(node.get("pod_cidrs") or [])
    both = "docker" in runtimes and "cni" in runtimes
    out: Dict[str, Any] = {"docker": None, "cni": None, "split": {}}
    shared = _by_family(plan.get("cluster_cidrs") or []) if fabric in SHARED_SEGMENT else {}

    def cni_range(block: "netaddr.IPNetwork", start: int, end: Optional[int] = None) -> Dict[str, str]:
        family = block.version
        if family not in shared:
            item = {"subnet": fmt_network(block)}
            if end is not None:
                item.update(rangeStart=fmt_address(start, family), rangeEnd=fmt_address(end, family))
        else:
            # the block's own addresses (its last IPv4 one may be the cluster's broadcast: left out)
            last = end if end is not None else block.last - (1 if family == 4 else 0)
            item = {"subnet": fmt_network(shared[family]), "rangeStart": fmt_address(start, family),
                    "rangeEnd": fmt_address(last, family)}
        item["gateway"] = fmt_address(block.first + 1, family)
        return item

    cni_ranges: List[List[Dict[str, str]]] = []
    docker_range: Optional["netaddr.IPNetwork"] = None
    for family in sorted(pods):
        block = pods[family]
        if family == 4 and both:
            # Halves of at least 4 addresses: the lower one keeps network and gateway out of host-local's range.
            if block.prefixlen > 29:
                errors.append(
                    "host %s: %s is a /%d: split in halves between host-local and Docker (podnet_runtimes: docker "
                    "and cni) it leaves 2^(32-%d) = %d addresses per half, too few after the network, gateway "
                    "and broadcast addresses; use a node prefix of /29 or shorter, or one runtime"
                    % (hostname, block, block.prefixlen, block.prefixlen + 1, 2 ** (31 - block.prefixlen)))
                continue
            low, high = _split(block)
            start, end = fmt_address(block.first + 2, family), fmt_address(low.last, family)
            cni_ranges.append([cni_range(block, block.first + 2, low.last)])
            docker_range = high
            out["split"][fmt_network(block)] = {"cni": "%s-%s" % (start, end), "docker": fmt_network(high)}
        elif family == 6 and fabric in OVERLAY:
            # the block's last address is the overlay device's VTEP address (vtep_address): never a pod's
            cni_ranges.append([cni_range(block, block.first + 2, block.last - 1)])
        else:
            cni_ranges.append([cni_range(block, block.first + 2)])
            if family == 4:
                docker_range = block
    if "docker" in runtimes and 4 not in pods:
        errors.append("host %s: podnet_runtimes has docker, which needs an IPv4 pod subnet; the plan gives only %s"
                      % (hostname, ", ".join(fmt_network(n) for n in pods.values())))
    if errors:
        raise PlanError(errors)

    if "docker" in runtimes:
        options: Dict[str, Any] = {"bridge": bridge, "iptables": False, "ip-masq": False,
                                   "fixed-cidr": fmt_network(docker_range)}
        if mtu:
            options["mtu"] = int(mtu)
        out["docker"] = options

    if "cni" in runtimes:
        bridge_conf: Dict[str, Any] = {
            "type": "bridge",
            "bridge": bridge,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": bool(hairpin),
        }
        if mtu:
            bridge_conf["mtu"] = int(mtu)
        bridge_conf["ipam"] = {
            "type": "host-local",
            "ranges": cni_ranges,
            "routes": [{"dst": "0.0.0.0/0" if f == 4 else "::/0"} for f in sorted(pods)],
        }
        out["cni"] = {
            "cniVersion": cni_version,
            "name": cni_network,
            "plugins": [
                bridge_conf,
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }
    return out


# --------------------------------------------------------------------------- #
# fabric vxlan: the static overlay
# --------------------------------------------------------------------------- #

VXLAN_DEVICES = {4: "podnet.vx4", 6: "podnet.vx6"}
VXLAN_CHAIN = "PODNET-VXLAN"
VXLAN_DEFAULT_PORT = 4789


def vtep_address(block: "netaddr.IPNetwork") -> int:
    """The VTEP address of a node's block, as an integer: the block's first address for IPv4 (the network
    address, never a pod's nor the bridge's), its last address for IPv6.

    Not the first for IPv6: that is the Subnet-Router anycast address of the bridge's prefix (RFC 4291 2.6.1),
    which the kernel puts on the bridge as soon as forwarding is on. One address as a local address of the
    overlay device and as an anycast address of the bridge gives two routes of different types for it in the
    local table, in an order that depends on which of the two the kernel saw first. The last address is no
    pod's: host-local's IPv6 range ends before it with this fabric, and verify's probe pods avoid it.
    """
    return int(block.first) if block.version == 4 else int(block.last)


def vtep_mac(cluster_cidrs: Sequence[str], vni: int, node: str) -> str:
    """The node's VTEP MAC: locally administered, unicast, derived from the cluster, the VNI and the node name.

    The same inputs give the same MAC on every run and after every reboot (no MAC to publish or read back); the
    order in which podnet_cluster_cidrs lists the networks does not matter.
    """
    import hashlib

    seed = "podnet.cluster vxlan|%s|%d|%s" % (",".join(sorted(str(c) for c in cluster_cidrs)), int(vni), node)
    raw = bytearray(hashlib.sha256(seed.encode("utf-8")).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join("%02x" % b for b in raw)


def _node_ips(entry: Mapping[str, Any]) -> Dict[int, "netaddr.IPNetwork"]:
    """{family: node IP as IPNetwork}, first per family, with the prefix of the node's network when the plan knows
    it (``node_cidrs``, or ``address/prefix`` in ``node_ips``), else a host prefix."""
    nets: Dict[int, netaddr.IPNetwork] = {}
    for cidr in entry.get("node_cidrs") or []:
        net = to_ipnetwork(str(cidr))
        nets.setdefault(net.version, net)
    out: Dict[int, netaddr.IPNetwork] = {}
    for ip in entry.get("node_ips") or []:
        net = to_ipnetwork(str(ip))
        known = nets.get(net.version)
        if net.prefixlen == (32 if net.version == 4 else 128) and known is not None and net.ip in known:
            net = to_ipnetwork("%s/%d" % (fmt_address(int(net.ip), net.version), known.prefixlen))
        out.setdefault(net.version, net)
    return out


def underlay_family(mine: Mapping[int, Any], theirs: Mapping[int, Any], pod_family: int) -> Optional[int]:
    """The underlay family that carries ``pod_family`` between two nodes: the same family when both have a node IP
    of it, else the other one both have (dual-stack pods over a single-stack underlay); None without one."""
    common = sorted(set(mine) & set(theirs))
    if pod_family in common:
        return pod_family
    return common[0] if common else None


def _on_link(mine: "netaddr.IPNetwork", theirs: "netaddr.IPNetwork") -> bool:
    """Both node IPs carry their network (address/prefix) and each lies in the other's: the same decision on
    both nodes, so each routes the other's pods the way the other routes back (strict rp_filter holds)."""
    host = 32 if mine.version == 4 else 128
    return (mine.prefixlen < host and theirs.prefixlen < host and theirs.ip in mine.cidr
            and mine.ip in theirs.cidr)


def overlay_config(plan: Mapping[str, Any], hostname: str, vni: int, port: int, direct_routing: bool = False,
                   tx_checksum_offload: Optional[bool] = None) -> Dict[str, Any]:
    """The overlay of one node (fabric vxlan): devices, per-peer lines, direct routes and the INPUT chains.

    Returns ``overlay`` (the engine's spec), ``routes`` (direct routes ``BLOCK via NODE_IP peer NAME`` of on-link
    peers with ``direct_routing``) and ``iptables`` (per underlay family the chain that accepts VXLAN on ``port``
    only from the peers' node IPs).
    """
    require_netaddr()
    nodes = plan.get("nodes") or {}
    me = _node(plan, hostname)
    mine = _node_ips(me)
    if not mine:
        raise PlanError(["host %s: podnet_fabric vxlan needs a node IP (podnet_node_ip): the VXLAN device's local "
                         "address and its peers' destination" % hostname])
    cluster = [str(c) for c in plan.get("cluster_cidrs") or []]
    my_pods = _by_family(me.get("pod_cidrs") or [])
    vteps = ["%s/%d" % (fmt_address(vtep_address(my_pods[f]), f), 32 if f == 4 else 128) for f in sorted(my_pods)]
    errors: List[str] = []
    lines: List[str] = []
    direct: List[str] = []
    used = set()
    sources: Dict[int, List[str]] = {4: [], 6: []}
    for peer in sorted(nodes, key=natural_key):
        if peer == hostname:
            continue
        entry = nodes[peer]
        theirs = _node_ips(entry)
        for f in sorted(theirs):
            if f in mine:
                addr = fmt_address(int(theirs[f].ip), f)
                if addr not in sources[f]:
                    sources[f].append(addr)
        mac = vtep_mac(cluster, vni, str(peer))
        for cidr in entry.get("pod_cidrs") or []:
            block = to_ipnetwork(str(cidr))
            fam = block.version
            under = underlay_family(mine, theirs, fam)
            if under is None:
                errors.append("host %s: peer %s has node IPs of %s only, this node of %s only: no common underlay "
                              "family for the VXLAN overlay" % (hostname, peer,
                                                                "/".join("IPv%d" % f for f in sorted(theirs)) or "none",
                                                                "/".join("IPv%d" % f for f in sorted(mine))))
                break
            dst = fmt_address(int(theirs[under].ip), under)
            if direct_routing and fam == under and _on_link(mine[fam], theirs[fam]):
                direct.append("%s via %s peer %s" % (fmt_network(block), dst, peer))
                continue
            used.add(under)
            lines.append("%s via %s mac %s dst %s peer %s"
                         % (fmt_network(block), fmt_address(vtep_address(block), fam), mac, dst, peer))
    if errors:
        raise PlanError(errors)
    mac = vtep_mac(cluster, vni, hostname)
    # each VTEP address on the device that carries its pod family (one address on one device: the node's packets
    # to peers' pods leave with it as source)
    carrier = {f: underlay_family(mine, mine, f) for f in my_pods}
    devices = [{"name": VXLAN_DEVICES[u], "family": u, "local": fmt_address(int(mine[u].ip), u), "mac": mac,
                "addresses": [v for f, v in zip(sorted(my_pods), vteps) if carrier[f] == u]} for u in sorted(mine)]
    chains: List[Dict[str, Any]] = []
    for f in sorted(mine):
        rules: List[Dict[str, Any]] = [{"source": ip, "comment": "vxlan peer", "jump": "ACCEPT"} for ip in sources[f]]
        rules.append({"comment": "vxlan from a host that is not a peer", "jump": "DROP"})
        chains.append({"ip_version": f, "table": "filter", "chains": [{
            "name": VXLAN_CHAIN, "rules": rules,
            "jumps": [{"from": "INPUT", "position": "insert", "protocol": "udp", "dport": int(port)}]}]})
    spec: Dict[str, Any] = {"vni": int(vni), "port": int(port), "devices": devices, "peers": "\n".join(lines)}
    if tx_checksum_offload is not None:
        spec["tx_checksum_offload"] = bool(tx_checksum_offload)
    return {"overlay": spec, "routes": direct, "iptables": chains}
