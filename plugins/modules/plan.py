#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/plan.py)
# on the controller; this file carries the documentation.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: plan
short_description: Carve the cluster CIDRs into sticky, validated per-node pod subnets
description:
  - Computes the pod-network plan of the whole cluster on the controller, once, from the inventory.
  - Every node of I(group) gets one block of each configured family (default a /24 of IPv4, a /64 of IPv6),
    the gateway address of each (the first usable address, which the node's bridge holds) and the
    cluster-wide table that later roles use for routes.
  - B(Sticky.) Assignments are recorded in I(state_file) (YAML; its top-level key C(nodes) maps each
    inventory hostname to the list of its pod CIDRs). A recorded node keeps its blocks for as long as it stays
    in the inventory, whatever other nodes are added, removed or reordered. New nodes, in natural name order,
    take the lowest never-used blocks, so the same inventory and state always give the same plan. Blocks freed
    by removed nodes are listed under C(released) and handed out again, oldest first, only when no never-used
    block is left, so that stale routes to them cannot catch a new node's pods.
  - B(Validated.) Every problem is reported at once, before any host is touched, naming the variable, the
    host and the arithmetic; a failed plan leaves the state file exactly as it was.
  - B(Safe state.) The file is written atomically, only when its content changes, never in check mode (check
    mode with C(--diff) shows what would change), under an exclusive lock so that concurrent runs cannot
    interleave.
  - Per node it reads the host variables C(podnet_node_ip) (an address, C(address/prefix), or a list of
    them; default the C(default_ipv4)/C(default_ipv6) address from facts, and for a family without a default
    route, such as IPv6 while its router is away, the first global address of that family on the interface of
    the other family's default route) and C(podnet_pod_cidrs) (explicit subnets, honoured when valid).
  - Run it with C(run_once); its facts are set on every host of the play.
version_added: 0.1.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
requirements:
  - netaddr (on the controller)
options:
  cluster_cidrs:
    description:
      - One IPv4 and/or one IPv6 network to carve into node subnets.
    type: list
    elements: raw
    default: ["10.244.0.0/16"]
  node_prefix_ipv4:
    description:
      - Prefix length of each node's IPv4 pod subnet. Must be longer than the cluster prefix and leave at least
        two usable addresses (gateway and one pod), so at most C(30).
    type: raw
    default: 24
  node_prefix_ipv6:
    description:
      - Prefix length of each node's IPv6 pod subnet; at most C(126).
    type: raw
    default: 64
  service_cidrs:
    description:
      - Service networks; never allocated. Any overlap with the cluster or reserved networks is an error, and so
        is a node IP inside one.
    type: list
    elements: raw
    default: []
  reserved_cidrs:
    description:
      - Other networks the pod network must not collide with (for example on-premises ranges). Any overlap with
        the cluster or service networks is an error.
    type: list
    elements: raw
    default: []
  state_file:
    description:
      - Path of the YAML state file on the controller. A hidden lock file C(.<name>.lock) is kept beside it.
      - Required, except with I(check_role_vars) or I(node_part).
    type: path
  previous_state_file:
    version_added: 0.2.0
    description:
      - Where the state file was kept before (the role passes the former default, C(podnet_state.yml) beside the
        inventory, when I(state_file) is the default). While only that file exists, the plan is read from it; the
        first run that writes the plan writes I(state_file) and removes the old file and its lock. Check mode moves
        nothing.
    type: path
  read_only:
    version_added: 0.2.0
    description:
      - The plan serves a playbook that changes no plan (verify, teardown). A recorded block that no longer fits the
        variables then means the variables differ from the plan that was applied, and the error says so instead of
        advising how to confirm a change.
    type: bool
    default: false
  group:
    description:
      - Inventory group that holds every node of the cluster.
    type: str
    default: podnet_nodes
  prune:
    version_added: 0.2.0
    description:
      - Release the blocks of every recorded node that is missing from the inventory. Off by default - a node that
        is only hidden for one run (a dynamic inventory that skips stopped instances) keeps its block.
    type: bool
    default: false
  release_nodes:
    version_added: 0.2.0
    description:
      - Recorded nodes, no longer in the inventory, whose blocks are released on purpose (C(podnet_release_nodes)).
    type: list
    elements: str
    default: []
  allow_readdress:
    version_added: 0.2.0
    description:
      - Let nodes lose blocks they hold (C(podnet_allow_readdress)) - a family the cluster no longer has, a block
        outside a changed cluster network or of a changed node prefix, a held block given elsewhere - and plan them
        anew. A recorded block that the node does not hold (it was asked, and holds nothing of it) is planned anew
        without it; only blocks that nodes hold are protected.
    type: bool
    default: false
  held_var:
    version_added: 0.2.0
    description:
      - The per-host variable registered from M(podnet.cluster.node_state) with C(state=probe); its C(held) (the
        pod CIDRs a node's record names, the gateways on its bridge) is adopted for a node the state file does not
        record - so a lost state file is rebuilt from the hosts - and is never handed to another node.
    type: str
    default: __podnet_held
  probed_var:
    version_added: 0.2.0
    description:
      - The variable registered from this module with I(recorded_only) before the nodes were probed. When set, only
        the hosts in its C(probe) list were asked in this run, and I(held_var) counts for them alone (a host
        skipped by the probe may still carry I(held_var) from an earlier play of the same run). When that task was
        skipped, no host's I(held_var) counts. Empty (the default) - every host's I(held_var) counts.
    type: str
    default: ""
  recorded_only:
    version_added: 0.2.0
    description:
      - Only find the nodes to ask before the plan; plan nothing. Reads the state file and returns C(recorded),
        C(unrecorded), C(probe) (the nodes to ask which pod subnets they hold - unrecorded nodes with I(adopt), and
        recorded nodes whose blocks no longer fit the cluster networks and node prefixes given), C(gather) (the
        nodes to gather network facts from) and C(ask) (either), so that one task on every host asks what is
        needed.
    type: bool
    default: false
  adopt:
    version_added: 0.2.0
    description:
      - With I(recorded_only), whether the nodes the state file does not record are to be asked what they hold
        (C(podnet_plan_adopt)); false leaves C(probe) empty.
    type: bool
    default: true
  node_part:
    version_added: 0.2.0
    description:
      - Only set the fact C(podnet_node) of one host (I(node), or the task's host), its entry of the registered plan
        I(plan_var) (skipped for a host that is not a node of the plan); plan nothing, read nothing.
      - For every host at once, loop over the hosts in one C(run_once) task with C(delegate_to=item),
        C(delegate_facts=true) and I(node=item), as the role does; one worker then serves them all (a task on every
        host forks one per host). Either is cheaper than templating C({{ podnet_plan.nodes[inventory_hostname] }})
        on every host, which copies the whole table for each host.
    type: bool
    default: false
  node:
    version_added: 0.2.0
    description:
      - With I(node_part), the inventory hostname whose C(podnet_node) is returned. Default - the task's host.
    type: str
  plan_var:
    version_added: 0.2.0
    description:
      - With I(node_part), the variable the plan task was registered as.
    type: str
    default: podnet_plan
  check_role_vars:
    version_added: 0.2.0
    description:
      - Only validate the variables of the role M(podnet.cluster.plan) (its C(meta/argument_specs.yml), entry point
        C(main)) of every host of the play, in one pass on the controller, then return C(checked) (the number of
        hosts); plan nothing, read nothing.
      - The role's task file C(plan.yml) starts with this, in place of the validation task Ansible adds on every
        host for the entry point C(main). This host's variables are taken as the task sees them; every other host
        adds those of its own variables that its C(hostvars) hold (inventory, facts, extra vars).
      - Fails naming each host and its errors, as the per-host validation would.
      - Also checks the cluster-wide variables' own arithmetic (C(podnet_cluster_cidrs) with host bits or a prefix
        beyond the family, node prefixes, overlaps of the cluster, service and reserved networks), once per distinct
        value, naming every host that has it - before any node is asked anything.
    type: bool
    default: false
  warn_absent:
    version_added: 0.2.0
    description:
      - Warn about recorded nodes missing from the inventory that keep their blocks, naming each with its blocks and
        how to release them (C(podnet_release_nodes), C(podnet_plan_prune)). The role's C(record.yml) turns it off,
        since the plan of the same run said it already.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Computes and returns the whole plan; writes neither the state file nor its lock.
  diff_mode:
    support: full
    description: The state file's text before and after, returned only with C(--diff) and only when it changes.
  platform:
    support: full
    platforms: all
    description: Runs on the controller (an action plugin); the hosts are not contacted.
notes:
  - The role M(podnet.cluster.plan) wraps this action (C(run_once), registered as C(podnet_plan), which every host
    of the play then shares as one object) and sets C(podnet_node) on every host.
  - Check mode reads the state file under a shared lock when a lock file exists, and creates nothing. A run that
    finds the lock held by another run waits for it and says so.
seealso:
  - name: Kubernetes cluster networking
    description: The IP-per-pod model this plan serves.
    link: https://kubernetes.io/docs/concepts/cluster-administration/networking/
"""

EXAMPLES = r"""
- name: Plan the pod network once for the whole cluster
  podnet.cluster.plan:
    cluster_cidrs: ["10.244.0.0/16", "fd00:10:244::/56"]
    node_prefix_ipv4: 24
    node_prefix_ipv6: 64
    service_cidrs: ["10.96.0.0/12"]
    state_file: "{{ inventory_dir }}/podnet_state.yml"
  run_once: true
  register: podnet_plan

- name: Show this node's pod subnets
  ansible.builtin.debug:
    msg: "{{ podnet_plan.nodes[inventory_hostname].pod_cidrs }}"

- name: Set every node's fact podnet_node from the registered plan, in one worker
  podnet.cluster.plan:
    node_part: true
    node: "{{ item }}"
  run_once: true
  delegate_to: "{{ item }}"
  delegate_facts: true
  loop: "{{ ansible_play_batch }}"
"""

RETURN = r"""
ansible_facts:
  description: With I(node_part), C(podnet_node), this host's entry of the plan (see I(nodes)).
  returned: with node_part, on a node of the plan
  type: dict
  sample: {podnet_node: {node_ips: ["172.31.250.11"], pod_cidrs: ["10.244.0.0/24"]}}
checked:
  description: With I(check_role_vars), how many hosts had their role variables validated.
  returned: with check_role_vars
  type: int
  sample: 500
cluster_cidrs:
  description: The cluster networks, IPv4 first. The whole table (this key to C(nodes)) is at the top of the result.
  returned: success
  type: list
  elements: str
  sample: ["10.244.0.0/16"]
service_cidrs:
  description: The service networks.
  returned: success
  type: list
  elements: str
reserved_cidrs:
  description: The reserved networks.
  returned: success
  type: list
  elements: str
node_prefix_ipv4:
  description: The IPv4 node prefix, or null when the cluster has no IPv4 network.
  returned: success
  type: int
  sample: 24
node_prefix_ipv6:
  description: The IPv6 node prefix, or null when the cluster has no IPv6 network.
  returned: success
  type: int
node_cidrs:
  description: Underlay networks known from the nodes' addresses (facts, or C(address/prefix) notation), merged.
  returned: success
  type: list
  elements: str
  sample: ["172.31.250.0/24"]
nodes:
  description: One entry per inventory hostname.
  returned: success
  type: dict
  sample:
    node1:
      node_ips: ["172.31.250.11"]
      node_cidrs: ["172.31.250.0/24"]
      pod_cidrs: ["10.244.0.0/24"]
      gateways: ["10.244.0.1"]
      bridge_addresses: ["10.244.0.1/24"]
state_file:
  description: Path of the state file.
  returned: success
  type: str
added:
  description: Blocks newly assigned by this run, per node.
  returned: success
  type: dict
  sample: {"node4": ["10.244.3.0/24"]}
absent:
  description: Recorded nodes missing from the inventory that keep their blocks (no I(prune), not in I(release_nodes)).
  returned: success
  type: dict
  sample: {"node7": ["10.244.6.0/24"]}
released:
  description: Blocks freed by this run (node removed from the inventory, or moved by an explicit claim), per former owner.
  returned: success
  type: dict
  sample: {"node2": ["10.244.1.0/24"]}
recorded:
  description: With I(recorded_only), the nodes the state file records.
  returned: with recorded_only
  type: list
  elements: str
unrecorded:
  description: With I(recorded_only), the nodes of the group the state file does not record.
  returned: with recorded_only
  type: list
  elements: str
probe:
  description: With I(recorded_only), the nodes to ask which pod subnets they hold (C(unrecorded) with I(adopt), else none).
  returned: with recorded_only
  type: list
  elements: str
gather:
  description:
    - With I(recorded_only), the nodes of the play to gather network facts from - C(podnet_plan_gather_facts) true,
      no C(podnet_node_ip), and no C(default_ipv4) or C(default_ipv6) in their facts.
  returned: with recorded_only
  type: list
  elements: str
ask:
  description: With I(recorded_only), the nodes in C(probe) or C(gather), in the group's order.
  returned: with recorded_only
  type: list
  elements: str
lock_waited:
  description: Seconds this run waited for the state file's lock held by another run.
  returned: when it waited
  type: float
errors:
  description: Every problem found, one line each.
  returned: failure
  type: list
  elements: str
"""
