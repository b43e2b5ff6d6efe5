# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the action podnet.cluster.plan_report (plugins/action/plan_report.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: plan_report
short_description: Show the pod-network plan as a table, and write it as JSON for other tools
version_added: 0.2.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
description:
  - Runs on the controller only (an action); reads the plan registered by M(podnet.cluster.plan).
  - Prints the plan as text, the same under every stdout callback (not a list of strings) - the fabric and the
    routers, each family's capacity ("3 of 256 /24 blocks used", departed nodes' blocks included), one row per node
    and family (node IP, pod CIDR, gateway), rows this run adds marked C(+ (new)), rows whose blocks change marked
    C(~ (changed)), and the departed nodes that still hold blocks.
  - With I(kubernetes), prints the Kubernetes settings that must agree with the plan - kubeadm
    C(ClusterConfiguration) (C(kubeadm.k8s.io/v1beta4)) C(networking.podSubnet), C(networking.serviceSubnet) (from
    C(podnet_service_cidrs), when given) and C(controllerManager.extraArgs) C(allocate-node-cidrs=false),
    C(configure-cloud-routes=false) and the node prefixes; kube-proxy C(KubeProxyConfiguration)
    (C(kubeproxy.config.k8s.io/v1alpha1)) C(clusterCIDR); the same as plain kube-controller-manager flags - with
    the reason for each (docs/kubernetes.md). Dual-stack values are comma-separated, in the plan's order.
  - With I(kubernetes_dir), writes them there as C(kubeadm-networking.yaml) (the two documents) and
    C(kube-controller-manager.flags) (one flag a line), atomically and only when their content changes; not in check
    mode.
  - With I(export), writes the plan as JSON to that path (C(podnet_plan_export)) - every node with its C(status)
    (new, changed, unchanged), the capacity, the fabric and routers, the departed and released blocks. Written in
    check mode too - a report the user asked for, not state.
options:
  plan_var:
    description: The variable the plan task was registered as.
    type: str
    default: podnet_plan
  fabric:
    description: The fabric (C(podnet_fabric)).
    type: str
    default: l2_routes
  routers:
    description: The hosts that route the pod subnets (the group C(podnet_routers), fabric C(router)).
    type: list
    elements: str
    default: []
  export:
    description: Path of the JSON file to write (C(podnet_plan_export)); unset writes none.
    type: path
  show:
    description: Print the table.
    type: bool
    default: true
  kubernetes:
    description: Print the Kubernetes settings that must agree with the plan (once, as text).
    type: bool
    default: false
    version_added: 0.2.0
  kubernetes_dir:
    description:
      - Directory on the controller to write the Kubernetes settings into (C(podnet_report_dir)), created when
        missing; unset writes none. Not written in check mode.
    type: path
    version_added: 0.2.0
attributes:
  check_mode:
    support: full
    description: The JSON export is written in check mode too; the Kubernetes settings files are not.
  diff_mode:
    support: none
    description: Nothing is compared; the table is the output.
  platform:
    support: full
    platforms: all
    description: Runs on the controller only (an action plugin).
"""

EXAMPLES = r"""
- name: Show the plan, and write it for other tools
  podnet.cluster.plan_report:
    fabric: "{{ podnet_fabric | default('l2_routes') }}"
    routers: "{{ groups['podnet_routers'] | default([]) }}"
    export: "{{ podnet_plan_export | default(omit, true) }}"
  run_once: true

- name: Show the Kubernetes settings that must agree with the plan, and write them for kubeadm
  podnet.cluster.plan_report:
    fabric: "{{ podnet_fabric | default('l2_routes') }}"
    show: false
    kubernetes: true
    kubernetes_dir: /var/tmp/podnet-report
  run_once: true
"""

RETURN = r"""
table:
  description: The lines printed.
  returned: always
  type: list
  elements: str
export:
  description: The path written, with I(export).
  returned: with export
  type: str
kubernetes:
  description: The Kubernetes settings that must agree with the plan.
  returned: with kubernetes or kubernetes_dir
  type: dict
  contains:
    cluster_configuration:
      description: The kubeadm C(ClusterConfiguration) document.
      type: dict
      sample: {apiVersion: kubeadm.k8s.io/v1beta4, kind: ClusterConfiguration,
               networking: {podSubnet: "10.244.0.0/16", serviceSubnet: "10.96.0.0/12"},
               controllerManager: {extraArgs: [{name: allocate-node-cidrs, value: "false"}]}}
    kube_proxy_configuration:
      description: The kube-proxy C(KubeProxyConfiguration) document.
      type: dict
      sample: {apiVersion: kubeproxy.config.k8s.io/v1alpha1, kind: KubeProxyConfiguration,
               clusterCIDR: "10.244.0.0/16", detectLocalMode: ClusterCIDR}
    controller_manager_flags:
      description: The plain kube-controller-manager flags.
      type: list
      elements: str
      sample: ["--allocate-node-cidrs=false", "--configure-cloud-routes=false", "--cluster-cidr=10.244.0.0/16"]
    notes:
      description: What Kubernetes would refuse or lack although the plan accepts it (a service network too large,
        none of one family).
      type: list
      elements: str
    text:
      description: The lines printed.
      type: list
      elements: str
kubernetes_files:
  description: The files written (or, in check mode, that would be), with I(kubernetes_dir).
  returned: with kubernetes_dir
  type: list
  elements: str
"""
