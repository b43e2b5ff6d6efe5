# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes settings that must agree with the plan. Pure functions, standard library and PyYAML only.

podnet.cluster gives every node its pod subnets itself (sticky blocks of the cluster networks, recorded in the state
file, written into each node's bridge and CNI configuration) and, with the ``gce`` fabric, owns the Compute Engine
routes to them. Kubernetes has its own machinery for both, on by default where kubeadm or a cloud provider sets
it up, and it does not know the plan:

* kube-controller-manager ``--allocate-node-cidrs`` (kubeadm turns it on whenever ``networking.podSubnet`` is set)
  hands every node a podCIDR from its own bitmap, in the order nodes register: other blocks than the plan's;
* ``--configure-cloud-routes`` (default true) then makes the route controller create a Compute Engine route per
  node for those podCIDRs, beside the ``gce`` fabric's routes, and delete routes it takes for its own;
* kube-proxy's ``clusterCIDR`` tells it which sources are pods (``detectLocalMode: ClusterCIDR``, the default);
  another value makes it masquerade pod traffic to services, or not masquerade traffic from outside;
* the service network (``serviceSubnet``, ``--service-cluster-ip-range``) is the one the plan kept the pod blocks
  away from (``podnet_service_cidrs``), when given.

:func:`settings` computes them from the plan's cluster networks (one per family, in the plan's order), the node
prefixes, the fabric and the service networks; :class:`KubernetesSettings` renders the kubeadm configuration
(``kubeadm.k8s.io/v1beta4`` ClusterConfiguration and ``kubeproxy.config.k8s.io/v1alpha1`` KubeProxyConfiguration),
the plain controller-manager flags for clusters not built with kubeadm, and a short text for the plan's output.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

KUBEADM_API_VERSION = "kubeadm.k8s.io/v1beta4"
KUBE_PROXY_API_VERSION = "kubeproxy.config.k8s.io/v1alpha1"
#: kubeadm and kube-apiserver refuse a service network with more host bits than this (/12 IPv4, /108 IPv6).
SERVICE_MAX_HOST_BITS = 20
#: kubeadm releases that check podSubnet against the node mask refuse a difference above this many bits.
KUBEADM_NODE_MASK_MAX_DIFF = 16
FAMILY_NAME = {4: "IPv4", 6: "IPv6"}
PREFIX_VAR = {4: "podnet_node_prefix_ipv4", 6: "podnet_node_prefix_ipv6"}
#: The files :func:`files` writes, in order.
FILE_NAMES = ("kubeadm-networking.yaml", "kube-controller-manager.flags")

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class KubernetesSettingsError(ValueError):
    """The plan's values cannot be expressed as Kubernetes settings (the message names the variable)."""


@dataclass(frozen=True)
class Arg:
    """One kube-controller-manager flag: its name (no dashes), its value, and why it must have it."""

    name: str
    value: str
    why: str


@dataclass
class KubernetesSettings:
    """What Kubernetes must be told so that it agrees with the plan."""

    cluster_cidrs: List[str]
    node_prefixes: Dict[int, int]
    fabric: str
    service_cidrs: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def pod_subnet(self) -> str:
        """kubeadm ``networking.podSubnet``, kube-proxy ``clusterCIDR``, ``--cluster-cidr``: comma-separated."""
        return ",".join(self.cluster_cidrs)

    @property
    def service_subnet(self) -> Optional[str]:
        """``networking.serviceSubnet`` / ``--service-cluster-ip-range``; None when the plan was given none."""
        return ",".join(self.service_cidrs) if self.service_cidrs else None

    def controller_manager_args(self) -> List[Arg]:
        """The flags of kube-controller-manager kubeadm must be told (``controllerManager.extraArgs``)."""
        cloud = ("on Compute Engine it would create its own route per node beside the gce fabric's routes (and "
                 "delete routes it takes for its own)" if self.fabric == "gce"
                 else "without a cloud provider it does nothing, and off, a cloud provider added later cannot start "
                 "managing pod routes beside the %s fabric" % self.fabric)
        args = [
            Arg("allocate-node-cidrs", "false",
                "podnet.cluster assigns each node its pod subnets (sticky blocks); the controller's own allocation "
                "would give nodes other podCIDRs, in the order they register (kubeadm turns it on when podSubnet "
                "is set)"),
            Arg("configure-cloud-routes", "false",
                "the route controller programs the cloud's routes for the podCIDRs the controller allocated; %s"
                % cloud),
        ]
        for family in sorted(self.node_prefixes):
            args.append(Arg("node-cidr-mask-size-ipv%d" % family, str(self.node_prefixes[family]),
                            "the plan's %s node prefix (%s); unused while allocation is off, but kubeadm and other "
                            "tools that read it see the plan's size" % (FAMILY_NAME[family], PREFIX_VAR[family])))
        return args

    def cluster_configuration(self) -> Dict[str, Any]:
        """The kubeadm ClusterConfiguration (v1beta4) holding only what must agree with the plan."""
        networking: Dict[str, Any] = {"podSubnet": self.pod_subnet}
        if self.service_subnet:
            networking["serviceSubnet"] = self.service_subnet
        return {
            "apiVersion": KUBEADM_API_VERSION,
            "kind": "ClusterConfiguration",
            "networking": networking,
            "controllerManager": {
                "extraArgs": [{"name": a.name, "value": a.value} for a in self.controller_manager_args()],
            },
        }

    def kube_proxy_configuration(self) -> Dict[str, Any]:
        """The KubeProxyConfiguration (v1alpha1) holding only what must agree with the plan."""
        return {
            "apiVersion": KUBE_PROXY_API_VERSION,
            "kind": "KubeProxyConfiguration",
            "clusterCIDR": self.pod_subnet,
            "detectLocalMode": "ClusterCIDR",
        }

    def controller_manager_flags(self) -> List[str]:
        """The plain kube-controller-manager flags, for a control plane not built with kubeadm."""
        flags = ["--%s=%s" % (a.name, a.value) for a in self.controller_manager_args()]
        flags.insert(2, "--cluster-cidr=%s" % self.pod_subnet)
        if self.service_subnet:
            flags.append("--service-cluster-ip-range=%s" % self.service_subnet)
        return flags

    def kubeadm_yaml(self) -> str:
        """``kubeadm-networking.yaml``: the two documents, to merge into the kubeadm configuration file."""
        head = ("# Written by podnet.cluster (the plan): the Kubernetes settings that must agree with the pod network\n"
                "# plan. Merge these fields into your kubeadm configuration (kubeadm init --config); see\n"
                "# docs/kubernetes.md of podnet.cluster for why each one matters.\n")
        body = yaml.safe_dump_all([self.cluster_configuration(), self.kube_proxy_configuration()],
                                  default_flow_style=False, sort_keys=False, explicit_start=True)
        return head + body

    def flags_text(self) -> str:
        """``kube-controller-manager.flags``: one flag a line, nothing else (``$(cat FILE)`` works)."""
        return "\n".join(self.controller_manager_flags()) + "\n"

    def files(self) -> List[Tuple[str, str]]:
        """[(file name, content)] to write into podnet_report_dir."""
        return [(FILE_NAMES[0], self.kubeadm_yaml()), (FILE_NAMES[1], self.flags_text())]

    def text(self, written_to: Optional[str] = None) -> str:
        """The short block the plan playbook prints."""
        lines = ["Kubernetes settings that must agree with this plan (docs/kubernetes.md):",
                 "  kubeadm ClusterConfiguration (%s):" % KUBEADM_API_VERSION,
                 "    networking.podSubnet: %s" % self.pod_subnet]
        if self.service_subnet:
            lines.append("    networking.serviceSubnet: %s" % self.service_subnet)
        else:
            lines.append("    networking.serviceSubnet: not known (podnet_service_cidrs is empty): give it, so that "
                         "the plan checks it against the cluster networks")
        lines.append("    controllerManager.extraArgs: %s"
                     % ", ".join("%s=%s" % (a.name, a.value) for a in self.controller_manager_args()))
        lines.append("  kube-proxy KubeProxyConfiguration (%s): clusterCIDR: %s, detectLocalMode: ClusterCIDR"
                     % (KUBE_PROXY_API_VERSION, self.pod_subnet))
        lines.append("  kube-controller-manager without kubeadm: %s" % " ".join(self.controller_manager_flags()))
        lines.append("  cloud-controller-manager, where one runs: --allocate-node-cidrs=false "
                     "--configure-cloud-routes=false")
        for arg in self.controller_manager_args()[:2]:
            lines.append("  %s=false: %s" % (arg.name, arg.why))
        for note in self.notes:
            lines.append("  Note: %s" % note)
        if written_to:
            lines.append("  Written to %s: %s" % (written_to, ", ".join(FILE_NAMES)))
        return "\n".join(lines)


def _network(raw: Any, var: str) -> Network:
    try:
        return ipaddress.ip_network(str(raw).strip(), strict=True)
    except ValueError as exc:
        raise KubernetesSettingsError("%s: %r is not a network (%s)" % (var, raw, exc)) from None


def settings(cluster_cidrs: Sequence[str], node_prefixes: Mapping[int, Any], fabric: str,
             service_cidrs: Sequence[str] = ()) -> KubernetesSettings:
    """The Kubernetes settings for a plan of ``cluster_cidrs`` (one network per family, kept in the given order: the
    first is the primary family of dual-stack), ``node_prefixes`` ({4: 24, 6: 64}, one for each family of the
    cluster), ``fabric`` and the optional ``service_cidrs`` (podnet_service_cidrs; at most one per family).

    Raises :class:`KubernetesSettingsError` for values no plan has (the plan validated them already); what
    Kubernetes would refuse although the plan accepts it is a note."""
    nets = [_network(c, "podnet_cluster_cidrs[%d]" % i) for i, c in enumerate(cluster_cidrs or [])]
    if not nets:
        raise KubernetesSettingsError("podnet_cluster_cidrs: empty; the plan has no cluster network")
    families = [n.version for n in nets]
    if len(nets) > 2 or len(set(families)) != len(families):
        raise KubernetesSettingsError("podnet_cluster_cidrs: %s; Kubernetes takes one network per family "
                                      "(dual-stack: one IPv4 and one IPv6)" % ", ".join(str(n) for n in nets))
    prefixes: Dict[int, int] = {}
    notes: List[str] = []
    for net in nets:
        raw = (node_prefixes or {}).get(net.version)
        try:
            prefix = int(raw)
        except (TypeError, ValueError):
            raise KubernetesSettingsError("%s: %r is not a prefix length (cluster network %s)"
                                          % (PREFIX_VAR[net.version], raw, net)) from None
        if not net.prefixlen < prefix <= net.max_prefixlen:
            raise KubernetesSettingsError("%s: /%d does not fit the cluster network %s (it must be longer than /%d and "
                                          "at most /%d)" % (PREFIX_VAR[net.version], prefix, net, net.prefixlen,
                                                            net.max_prefixlen))
        prefixes[net.version] = prefix
        if prefix - net.prefixlen > KUBEADM_NODE_MASK_MAX_DIFF:
            notes.append("podSubnet %s is %d bits shorter than the node prefix /%d (%s): kubeadm releases that check "
                         "podSubnet against node-cidr-mask-size even with allocate-node-cidrs=false refuse more "
                         "than %d; use a longer cluster prefix or a shorter node prefix with them"
                         % (net, prefix - net.prefixlen, prefix, PREFIX_VAR[net.version], KUBEADM_NODE_MASK_MAX_DIFF))
    services = [_network(s, "podnet_service_cidrs[%d]" % i) for i, s in enumerate(service_cidrs or [])]
    service_families = [s.version for s in services]
    kept: List[str] = []
    if len(services) > 2 or len(set(service_families)) != len(service_families):
        notes.append("podnet_service_cidrs holds %s; Kubernetes's service network is one network per family, so "
                     "serviceSubnet and --service-cluster-ip-range are left out: give them yourself"
                     % ", ".join(str(s) for s in services))
    else:
        kept = [str(s) for s in services]
        for svc in services:
            if svc.max_prefixlen - svc.prefixlen > SERVICE_MAX_HOST_BITS:
                notes.append("service network %s has %d host bits; kubeadm and kube-apiserver take at most %d (/%d "
                             "or longer for %s)" % (svc, svc.max_prefixlen - svc.prefixlen, SERVICE_MAX_HOST_BITS,
                                                    svc.max_prefixlen - SERVICE_MAX_HOST_BITS, FAMILY_NAME[svc.version]))
        missing = sorted(set(families) - set(service_families)) if services else []
        extra = sorted(set(service_families) - set(families))
        if missing:
            notes.append("podnet_service_cidrs has no %s network while the cluster is dual-stack: Services stay "
                         "single-stack" % " or ".join(FAMILY_NAME[f] for f in missing))
        if extra:
            notes.append("podnet_service_cidrs has a %s network but the cluster network has none of that family"
                         % " and ".join(FAMILY_NAME[f] for f in extra))
    return KubernetesSettings(cluster_cidrs=[str(n) for n in nets], node_prefixes=prefixes, fabric=str(fabric),
                              service_cidrs=kept, notes=notes)


def from_plan(plan: Mapping[str, Any], fabric: str) -> KubernetesSettings:
    """:func:`settings` of a registered plan (the result of podnet.cluster.plan)."""
    prefixes = {4: plan.get("node_prefix_ipv4"), 6: plan.get("node_prefix_ipv6")}
    return settings(list(plan.get("cluster_cidrs") or []), prefixes, fabric, list(plan.get("service_cidrs") or []))
