# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Filter runtime_config: Docker daemon options and the CNI conflist of a node."""

from __future__ import annotations

DOCUMENTATION = r"""
name: runtime_config
author: podnet.cluster maintainers
version_added: 0.1.0
short_description: Docker daemon options and the CNI bridge conflist of a node, from the plan
description:
  - Docker gets C(bridge), C(iptables=false), C(ip-masq=false), C(fixed-cidr) and C(mtu); CNI a conflist
    with the reference C(bridge) plugin (C(isGateway), C(ipMasq=false), C(hairpinMode), host-local ranges
    from the node's pod subnets, default routes), C(portmap) and C(loopback).
  - With both runtimes each IPv4 block is split in halves so the two allocators never hand out the same
    address - host-local the lower half after the gateway (C(rangeStart)/C(rangeEnd)), Docker the upper half
    (C(fixed-cidr)). Docker gets IPv4 only (Docker 20.10 with C(ipv6) rewrites the bridge's IPv6 addresses);
    IPv6 pods come from CNI.
extends_documentation_fragment:
  - podnet.cluster.node_filter
options:
  runtimes:
    description: Runtimes to configure, C(docker) and/or C(cni).
    type: list
    elements: str
    required: true
  bridge:
    description: The bridge name.
    type: str
    default: cbr0
  mtu:
    description: MTU for containers (the bridge's).
    type: int
  cni_network:
    description: The CNI network name.
    type: str
    default: podnet
  cni_version:
    description: The conflist's C(cniVersion).
    type: str
    default: 1.0.0
"""

EXAMPLES = r"""
- name: Compute the runtime configuration
  ansible.builtin.set_fact:
    __podnet_runtime: "{{ podnet_plan | podnet.cluster.runtime_config(inventory_hostname, ['docker', 'cni'], mtu=1500) }}"
"""

RETURN = r"""
_value:
  description: C(docker) (daemon options or null), C(cni) (the conflist or null), C(split) (how each block is shared).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import runtime_config as _runtime_config
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError


def runtime_config(plan, hostname, runtimes, bridge="cbr0", mtu=None, cni_network="podnet", cni_version="1.0.0"):
    try:
        return _runtime_config(plan, str(hostname), [str(r) for r in runtimes or []], str(bridge),
                               int(mtu) if mtu else None, str(cni_network), str(cni_version))
    except PlanError as exc:
        raise AnsibleFilterError("podnet.cluster.runtime_config: %s" % exc)


class FilterModule:
    def filters(self):
        return {"runtime_config": runtime_config}
