# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter verify_matrix: the verify probe matrix (targets per node, judgement, report)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: verify_matrix
author: podnet.cluster maintainers (!UNKNOWN)
version_added: 0.1.0
short_description: Build and judge the probe matrix of the verify role
description:
  - Controller-side arithmetic of the role C(podnet.cluster.verify), so that no target list is built in Jinja.
    The input is the C(podnet_plan) fact; the first argument says which step to compute.
  - C(pod_addresses) - the addresses (C(addr/prefix), one per pod subnet) of probe pod number O(index) (0 or
    1) of O(node) when it is wired by hand (veth mode) - the highest addresses of each subnet that no
    allocator of the node hands out (Docker's C(fixed-cidr), host-local's range, as configured for
    O(runtimes)); an error naming the host, the subnet and what covers it when there are not two.
  - C(cells) - every cell of the matrix (check, family, source, target, address, expectation, and why it
    cannot be probed, if so); only those whose source is O(node) when O(node) is given.
  - C(probes) - the probes O(node) runs, as the O(probes) argument of M(podnet.cluster.probe) (the full
    matrix; O(N) per node).
  - C(targets) - the probes of every node at once, for the whole run (O(number of probes)) - C(probes)
    {node - the O(probes) of M(podnet.cluster.probe)}, C(servers) {node - its self-checks}, C(selection)
    (each node's peers when sampling, else C(null)) and C(sampling) (C(mode) full or sampled, C(peers),
    C(seed), C(rotation), C(rotations), C(segments), C(nodes), C(why)). O(sample) and O(seed) choose the
    sample.
  - C(judge) - every probe of every node judged against O(results) (with O(selection) and O(sampling) of
    C(targets) when sampled); returns the summary (matrices, failures with their category, text report)
    that the role stores as C(podnet_verify_result).
  - C(preflight) - a list of configuration errors (empty when verify can run).
  - The checks are C(pod_pod) (pod on A to pod on B, every ordered pair, no NAT, the pod's own IP seen; A to
    A is the first probe pod of A to its second one),
    C(node_pod) (node A to pod on B, one of A's addresses seen), C(pod_node) (pod on A to node B's IP, the
    pod's IP seen; with O(fabric) C(vxlan), for B other than A, one of A's addresses - that fabric masquerades
    pods' traffic to other nodes' node IPs) and C(egress) (pod on A to the external address, masqueraded to one of A's addresses),
    for every family of the plan.
options:
  _input:
    description: The C(podnet_plan) fact.
    type: dict
    required: true
  step:
    description: What to compute.
    type: str
    choices: [pod_addresses, cells, probes, targets, judge, preflight]
    required: true
  node:
    description: The node (inventory host name) for C(pod_addresses), C(cells), C(probes) and C(preflight).
    type: str
  nodes:
    description: The nodes of this run (inventory host names); plan nodes not listed are left out.
    type: list
    elements: str
  pods:
    description: Node name to the result of M(podnet.cluster.probe_pod) for its (first) probe pod.
    type: dict
  peers:
    version_added: 0.2.0
    description:
      - Node name to the result of M(podnet.cluster.probe_pod) for its second probe pod, the target of the
        node's same-node C(pod_pod) cell.
    type: dict
  index:
    version_added: 0.2.0
    description: Which probe pod of O(node) C(pod_addresses) is for (C(0) the first, C(1) the second).
    type: int
    default: 0
  servers:
    description: Node name to the result of M(podnet.cluster.probe_pod) for its node-side (host mode) server.
    type: dict
  results:
    description: Node name to the result of M(podnet.cluster.probe) (for C(judge)).
    type: dict
  fabric:
    description:
      - The fabric (C(podnet_fabric)); C(vxlan) expects pod to other node traffic masqueraded, and its
        probe pods wired by hand (C(pod_addresses), C(preflight)) never take the node's VTEP address.
    type: str
    version_added: 0.2.0
  external:
    description:
      - The external target - C(ipv4), C(ipv6) (addresses or empty), C(port) and C(server) (the name of the
        probe server running there, or empty - then only reachability is checked).
    type: dict
  port:
    description: The probe servers' TCP port.
    type: int
    default: 47300
  runtimes:
    description: C(podnet_runtimes), checked by C(preflight); the allocators C(pod_addresses) keeps away from.
    type: list
    elements: str
  external_host:
    description: C(podnet_verify_external_host), checked by C(preflight).
    type: str
  inventory_hosts:
    description: All inventory host names, for C(preflight).
    type: list
    elements: str
  timeout:
    description: C(podnet_verify_timeout), checked by C(preflight).
    type: float
  sample:
    version_added: 0.2.0
    description:
      - C(podnet_verify_peers), for C(targets) - C(auto) (the full matrix up to 30 nodes, 10 peers per node
        above), C(all), or a number of peers per node.
    type: raw
    default: auto
  seed:
    version_added: 0.2.0
    description: C(podnet_verify_seed), for C(targets) - chooses the rotation of the sample (a whole number).
    type: int
    default: 0
  selection:
    version_added: 0.2.0
    description: The C(selection) of C(targets), for C(judge) (C(null) - the full matrix).
    type: dict
  sampling:
    version_added: 0.2.0
    description: The C(sampling) of C(targets), for C(judge) (shown in the report).
    type: dict
"""

EXAMPLES = r"""
- name: Run this node's probes
  podnet.cluster.probe:
    probes: "{{ podnet_plan | podnet.cluster.verify_matrix('probes', node=inventory_hostname, nodes=nodes,
                pods=pods, peers=peers, servers=servers, external=external, port=47300) }}"

- name: Judge them all
  ansible.builtin.set_fact:
    podnet_verify_result: "{{ podnet_plan | podnet.cluster.verify_matrix('judge', nodes=nodes, pods=pods,
                              peers=peers, servers=servers, results=results, external=external, port=47300) }}"
  run_once: true
"""

RETURN = r"""
_value:
  description:
    - C(pod_addresses) - a list of C(addr/prefix); C(probes) - a list of probe dicts (C(id), C(target),
      C(port), C(source_netns), C(connect_only)); C(preflight) - a list of error strings.
    - C(judge) - a dict with C(passed), C(total), C(ok_count), C(failed_count), C(nodes), C(families), C(endpoints),
      C(checks) (per check and family - C(title), C(sources), C(targets), C(rows)), C(failures),
      C(failures_by_source), C(report) (text) and C(report_lines).
  type: raw
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.podnet.cluster.plugins.plugin_utils import verify as verify_lib
from ansible_collections.podnet.cluster.plugins.plugin_utils import verify_judge, verify_sample

STEPS = ("pod_addresses", "cells", "probes", "targets", "judge", "preflight")


def verify_matrix(plan, step, node=None, nodes=None, pods=None, servers=None, results=None, external=None,
                  port=47300, runtimes=None, external_host=None, inventory_hosts=None, timeout=3, peers=None,
                  index=0, sample="auto", seed=0, selection=None, sampling=None,
                  fabric=None):
    if step not in STEPS:
        raise AnsibleFilterError("verify_matrix: step must be one of %s, got %r" % (", ".join(STEPS), step))
    try:
        if step in ("preflight", "pod_addresses"):  # per host: its own node of the plan only
            plan = verify_lib.node_view(plan, node)
        else:
            plan = verify_lib.plain(plan)
        if step == "preflight":
            return verify_lib.preflight(plan, node, runtimes=runtimes, external=external,
                                        external_host=external_host, inventory_hosts=inventory_hosts,
                                        port=port, timeout=timeout, fabric=fabric)
        if not isinstance(plan, dict) or not isinstance(plan.get("nodes"), dict):
            raise AnsibleFilterError("verify_matrix: the input must be the podnet_plan fact")
        port = int(port)
        if step == "pod_addresses":
            if node not in plan["nodes"]:
                raise AnsibleFilterError("verify_matrix: %r is not a node of the plan" % (node,))
            index = int(index)
            if index not in (0, 1):
                raise AnsibleFilterError("verify_matrix: index must be 0 or 1, got %r" % (index,))
            return verify_lib.probe_addresses(plan, node, runtimes or [], count=2, fabric=fabric)[index]
        nodes = verify_lib.plain(nodes) if nodes is not None else list(plan["nodes"])
        if step == "cells":
            chosen, _sampling = verify_sample.selection_for(plan, nodes, sample, seed)
            return verify_lib.cells(plan, nodes, pods or {}, servers or {}, external, port,
                                    source=None if node is None else str(node), peers=peers or {},
                                    selection=chosen, fabric=fabric)
        if step == "probes":
            return verify_sample.probes_for(plan, str(node), nodes, pods or {}, servers or {}, external, port,
                                            peers=peers or {})
        if step == "targets":
            return verify_sample.plan_targets(plan, nodes, pods or {}, servers or {}, external, port,
                                              peers=peers or {}, sample=sample, seed=seed)
        return verify_judge.judge(plan, nodes, pods or {}, servers or {}, results or {}, external, port,
                                  peers=peers or {}, selection=selection, sampling=sampling, fabric=fabric)
    except verify_lib.VerifyError as exc:
        raise AnsibleFilterError("verify_matrix: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {"verify_matrix": verify_matrix}
