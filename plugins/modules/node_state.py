#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_state
short_description: A node's whole pod network from one document, in one call (preflight, apply, teardown)
description:
  - Reconciles everything podnet.cluster owns on a node from one node document - the bridge and its pod gateways,
    forwarding (live and in a sysctl.d file), the C(PODNET-FORWARD) and C(PODNET-MASQ) chains, the pod routes, the
    Docker keys in C(daemon.json), the CNI conflist, the boot unit C(podnet-cluster.service) with a Docker drop-in,
    and the restore program they run.
  - The document is built on the controller by the action of the same name from the plan (C(podnet_plan)) and the
    role's C(podnet_*) variables; give I(document) only to replay one by hand.
  - Reads all current state first and computes every change; in check mode it writes nothing and also runs
    C(iptables-restore --test) on the exact chain changes, so a check-mode run on every node is the preflight.
  - Keeps the document and what it found before its first change in C(<state_dir>/node.json) (default
    C(/etc/podnet/node.json)). The next run removes what an earlier one owned and this document no longer wants (a
    renamed bridge, a dropped runtime or address family, masquerade turned off, another fabric); I(state=absent)
    removes everything and puts back the values it replaced (forwarding, Docker keys).
  - A node that already holds other pod gateways, or whose record names other pod subnets, than the document is
    refused before any change unless re-addressing is confirmed (I(allow_readdress)).
version_added: 0.2.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
requirements:
  - iproute2, iptables (with ip6tables for IPv6) on the node; Python 3.8 or later
extends_documentation_fragment:
  - podnet.cluster.attributes
options:
  settings:
    description:
      - The node role's settings, by their names without C(podnet_) (C(fabric), C(bridge), C(bridge_mtu),
        C(runtimes), C(masquerade), C(state_dir), C(allow_readdress), ...; the keys of C(DEFAULTS) in
        C(plugins/plugin_utils/document.py)); unknown keys are an error. The action builds the node document
        from them and the plan in I(plan_var). With I(state=probe) only C(bridge) and C(state_dir) are read.
      - When not given, the host's own C(podnet_<name>) variables (in the role, its defaults among them); a
        setting that is not set takes the default of C(DEFAULTS).
      - Read by the action on the controller; the module on the node does not take it.
    type: dict
    default: {}
  plan_var:
    description:
      - The variable holding the plan (registered by the role C(podnet.cluster.plan) in the same play).
      - Read by the action on the controller; the module on the node does not take it.
    type: str
    default: podnet_plan
  cluster_cidrs:
    description:
      - With I(state=probe), before there is a plan - the cluster networks whose addresses on the node's bridge
        count as held pod gateways.
      - Read by the action on the controller; the module on the node does not take it.
    type: list
    elements: str
    default: []
  document:
    description:
      - The node document (see C(plugins/plugin_utils/document.py)). The action builds it from the plan and
        I(settings) when it is not given; the module on the node needs it.
    type: dict
  state:
    description:
      - C(present) makes the node match the document; C(absent) removes everything podnet.cluster owns there,
        reading the record (or, without one, the document); C(probe) only reports what the node holds (for the
        planner's adoption); C(restore) re-applies the kernel state of the record, as the boot unit does;
        C(restart) restarts I(service) when it runs (systemd, else the SysV C(service) command), waits until it is
        active again and restores the pod gateways (dockerd strips them), so a batch of nodes is done before the
        next one starts (C(throttle)); a service that is not running is left alone. Every state but C(probe) and
        check mode holds the node lock (an abstract Unix socket), C(restart) included, and waits for another
        podnet.cluster run on the node to finish.
      - C(absent) needs no plan - the node's record says what its last converge made. Without a record only what
        carries the collection's names and marks goes (its chains, routes of its protocol, its unit, restore and
        CNI files); the bridge's link is kept, since no record says the collection created it.
      - C(validate) runs on the controller only, once (C(run_once)), before any node is asked anything - every
        node's settings (its C(podnet_*) variables as its hostvars hold them, over this task's I(settings)) and
        what each node's fabric needs (a host in I(router_group) for C(router); C(podnet_gce_project) and a zone
        for C(gce)), every problem naming the host and the variable; returns C(fabrics), each node's fabric.
    type: str
    choices: [present, absent, probe, restore, restart, validate]
    default: present
  group:
    description: With I(state=validate), the inventory group of the nodes (C(podnet_node_group)).
    type: str
    default: podnet_nodes
  router_group:
    description: With I(state=validate), the group of the routers of fabric C(router) (C(podnet_router_group)).
    type: str
    default: podnet_routers
  fabric_checks:
    description: With I(state=validate), also check what each node's fabric needs (off for teardown).
    type: bool
    default: true
  service:
    description: The service to restart with I(state=restart).
    type: str
    default: docker
  timeout:
    description: Seconds to wait for I(service) to be active again.
    type: int
    default: 120
  checked:
    description:
      - The registered result of this run's check of the same node (a check-mode call, the role's preflight).
        When it checked the same document (C(document_digest)) and found nothing to change (C(would_change)),
        with no uplink to put back first, the action returns that result with C(changed=false) and does not run
        the module again, so a run that changes nothing costs one call per node, not two.
      - Read by the action on the controller; the module on the node does not take it.
    type: dict
  allow_readdress:
    description:
      - Internal, set by the action from the setting C(allow_readdress) (C(podnet_allow_readdress)); do not set it
        in a task. Confirms, for this run, that the node may lose pod subnets it holds. Not part of the document,
        so not recorded on the node.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Preflight on every node (nothing changes)
  podnet.cluster.node_state:
  check_mode: true

- name: Converge the node
  podnet.cluster.node_state:

- name: Remove podnet.cluster from the node
  podnet.cluster.node_state:
    state: absent

- name: Check every node's variables before any node is asked anything
  podnet.cluster.node_state:
    state: validate
  run_once: true
"""

RETURN = r"""
summary:
  description:
    - One line of what changed on the node (set by the action when something changed, also as C(msg)). Under
      C(--diff) it ends the host's diff, whose headers name the host; the restore program's files are one line there,
      and the record (which repeats every change) shows only with C(-v).
  returned: when changed, with state present or absent
  type: str
  sample: bridge address changed, 6 routes replaced, Docker restart pending
fabrics:
  description: With I(state=validate), each node's fabric.
  returned: with I(state=validate)
  type: dict
  sample: {node-a: router, node-b: router}
fabric_set:
  description: With I(state=validate), the fabrics of the nodes, each once, sorted.
  returned: with I(state=validate)
  type: list
  elements: str
  sample: [router]
routers:
  description: With I(state=validate), the hosts of the router group (I(router_group)) in the play, sorted.
  returned: with I(state=validate)
  type: list
  elements: str
  sample: [router-1]
gce_steps:
  description:
    - With I(state=validate), whether the Compute Engine steps have something to do in this run, for the whole
      cluster - a node is on fabric C(gce), or C(podnet_gce_project) is set (the routes of a fabric left behind
      go). The playbooks run those steps only then, or on a node whose record says C(gce).
  returned: with I(state=validate)
  type: bool
changes:
  description: What changed (or would change in check mode), by part (bridge, sysctl, iptables, routes, files).
  returned: always
  type: dict
docker_changed:
  description: Whether Docker's daemon.json changed (Docker must restart to read it).
  returned: always
  type: bool
docker_restart:
  description:
    - Whether Docker must restart to read its changed daemon.json - C(docker_changed), and the service (I(service))
      runs on the node. A stopped service reads the file when it starts; the node role's handler restarts Docker
      only where this is true.
  returned: always
  type: bool
held:
  description: Pod CIDRs recorded on the node and pod gateways (inside the cluster networks) on its bridges.
  returned: always
  type: dict
  sample: {recorded: [10.244.1.0/24], gateways: [10.244.1.1/24]}
uplink_release:
  description:
    - The arguments of M(podnet.cluster.uplink_bridge) (I(state=absent)) that put back an uplink an earlier run
      moved into a bridge that this document (or teardown) no longer wants; C(null) when there is none. The node
      role runs it before the node's change.
  returned: with I(state=present) or I(state=absent)
  type: dict
  sample: {bridge: cbr0, uplink: eth0, state: absent, snapshot_path: /etc/podnet/uplink-cbr0.json}
uplink_move:
  description:
    - The arguments of M(podnet.cluster.uplink_bridge) (I(state=present)) that move the uplink into the bridge
      (fabric C(l2_bridge)); C(null) otherwise. The node role runs it after the node's change.
  returned: with I(state=present) or I(state=absent)
  type: dict
  sample: {bridge: cbr0, uplink_address: 192.0.2.11, state: present, rollback_timeout: 30}
restarted:
  description: With I(state=restart), whether the service was restarted (it is not when it does not run).
  returned: always
  type: bool
recorded_fabric:
  description: The fabric of the node's record (its last converge), or null without a record.
  returned: with I(state=present) or I(state=absent)
  type: str
  sample: gce
fabric_steps:
  description:
    - Whether the node has a fabric step of its own besides its document - its uplink moves into or out of a bridge
      (I(uplink_move), I(uplink_release)), or its record says C(gce) (the Compute Engine routes of its subnets may
      have to go). The playbooks include those steps on the node only then.
  returned: with I(state=present) or I(state=absent), when the module ran
  type: bool
record:
  description: Path of the node record.
  returned: always
  type: str
  sample: /etc/podnet/node.json
document_digest:
  description:
    - SHA-256 of the document, the state and the run's confirmation to re-address (set by the action), for
      I(checked).
  returned: with I(state=present) or I(state=absent)
  type: str
would_change:
  description:
    - Whether the node differs from the document, that is what C(changed) is before a task's C(changed_when)
      (the preflight hides its C(changed)); read through I(checked).
  returned: with I(state=present) or I(state=absent)
  type: bool
diff:
  description: Before and after text of every changed part.
  returned: with --diff
  type: list
"""

import os
import re
import time
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.engine.lock import node_lock
from ansible_collections.podnet.cluster.plugins.module_utils.engine.node import apply_node, check_node, held, plan_node
from ansible_collections.podnet.cluster.plugins.module_utils.engine.plan import Plan
from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts.uplink import uplink_tasks
from ansible_collections.podnet.cluster.plugins.module_utils.engine.record import read_record, record_path
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import (
    EngineError,
    ModuleRunner,
    fail_module,
    reads_once,
)


def readdress_problem(doc, found, allow=False):
    """Why the document would silently re-address this node, or None (``allow``: re-addressing is confirmed)."""
    if allow or doc.get("allow_readdress"):
        return None
    want = set(doc.get("pod_cidrs") or [])
    recorded = set(found["recorded"])
    # by address: the gateway's prefix is the fabric's (the block's, or the cluster's on a shared segment)
    gateways = {g.split("/")[0] for g in doc["bridge"].get("addresses") or []}
    moved = sorted(recorded - want) if recorded else []
    stray = sorted(g for g in found["gateways"] if g.split("/")[0] not in gateways)
    if not moved and not stray:
        return None
    return ("node %s already holds %s, but the plan gives it %s: the pods on it would lose their addresses. "
            "Restore the state file (or let the planner adopt the node), or run podnet.cluster.site with "
            "-e podnet_allow_readdress=true to re-address it deliberately (docs/operations.md)"
            % (doc["node"], ", ".join(moved + stray), ", ".join(sorted(want)) or "nothing"))


def service_commands(runner, service):
    """(restart argv, is-active argv) through systemd when it runs, else the service command (SysV)."""
    if os.path.isdir("/run/systemd/system"):
        return ([runner.which("systemctl"), "restart", service],
                [runner.which("systemctl"), "is-active", "--quiet", service])
    return [runner.which("service"), service, "restart"], [runner.which("service"), service, "status"]


def service_active(runner, service):
    try:
        _restart, probe = service_commands(runner, service)
    except EngineError:
        return False
    return runner.run(probe)[0] == 0


def restart_service(runner, service, timeout):
    """Restart ``service`` and wait until it is active again."""
    restart, probe = service_commands(runner, service)
    rc, out, err = runner.run(restart)
    if rc != 0:
        raise EngineError("restarting %s failed: %s" % (service, (err or out).strip()))
    deadline = time.monotonic() + timeout
    while runner.run(probe)[0] != 0:
        if time.monotonic() > deadline:
            raise EngineError("%s is not active %d s after its restart" % (service, timeout))
        time.sleep(0.5)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            document=dict(type="dict"),
            # read by the action on the controller (documented there); accepted here so the two specs agree
            settings=dict(type="dict", default={}),
            plan_var=dict(type="str", default="podnet_plan"),
            cluster_cidrs=dict(type="list", elements="str", default=[]),
            state=dict(type="str", choices=["present", "absent", "probe", "restore", "restart", "validate"],
                       default="present"),
            group=dict(type="str", default="podnet_nodes"),
            router_group=dict(type="str", default="podnet_routers"),
            fabric_checks=dict(type="bool", default=True),
            checked=dict(type="dict"),
            service=dict(type="str", default="docker"),
            timeout=dict(type="int", default=120),
            allow_readdress=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    doc = module.params["document"]
    if doc is None:
        module.fail_json(msg="podnet.cluster.node_state: no document; the action plugin builds it from the plan "
                             "(run the module through its action, not with ansible.builtin.raw or a bare module path)")
    state = module.params["state"]
    if state == "validate":
        module.fail_json(msg="state=validate runs in the action plugin on the controller, not in the module")
    runner = ModuleRunner(module)
    waited = 0.0
    try:
        # a restart too: it restores the gateways itself. Docker's drop-in (podnet-restore, run before Docker is
        # active) waits for the lock only a few seconds (--lock-timeout), then leaves the node to this run.
        with _locked(module.check_mode or state == "probe") as lock:
            waited = lock
            plan, path, record, found = _run(module, runner, doc, state)
    except EngineError as exc:
        node = str(doc.get("node") or "")
        if node and not re.search(r"\b%s\b" % re.escape(node), exc.msg):
            exc.msg = "node %s: %s" % (node, exc.msg)
        fail_module(module, exc)
    for warning in plan.warnings:
        module.warn(warning)
    if waited is not None and waited >= 0.05:  # seconds: taking a free lock takes microseconds, never a warning
        module.warn("waited %.1f s for this node's lock, held by another podnet.cluster run" % waited)
    if state == "restart" and not module.check_mode and plan.changed:
        # the gateways must be back before the next batch starts
        again = plan_node(runner, record["document"], record, "present", kernel_only=True)
        if again.changed:
            module.fail_json(msg="%s restarted, but the pod network of %s is not back: %s"
                                 % (module.params["service"], doc["node"], again.summary()))
    try:
        release, move = uplink_tasks(doc, record, state) if state in ("present", "absent") else (None, None)
    except EngineError as exc:
        fail_module(module, exc)
    # read only when the file changed: a node that has nothing for Docker is not asked about its service
    restart = bool(plan.docker_changed) and state in ("present", "absent") and \
        service_active(runner, module.params["service"])
    result = dict(changed=plan.changed or state == "restart", restarted=state == "restart",
                  changes=plan.summary(commands=module._diff), docker_changed=plan.docker_changed,
                  docker_restart=restart, held=found,
                  record=path, uplink_release=release, uplink_move=move,
                  recorded_fabric=((record or {}).get("document") or {}).get("fabric"))
    if module._diff:
        result["diff"] = plan.diff()
    module.exit_json(**result)


@contextmanager
def _locked(read_only):
    """The node lock around a run that may change the node (none for check mode and probes: they only read)."""
    if read_only:
        yield None
    else:
        with node_lock() as waited:
            yield waited


def _run(module, runner, doc, state):
    """Read the node, compute every change and (unless check mode) apply it; (plan, record path, record, held)."""
    path = record_path(doc)
    record = read_record(path)
    plan = None
    with reads_once(runner):  # nothing is written until the plan is made: what held() reads, the plan reads too
        found = held(runner, doc, record)
        if state == "probe":
            module.exit_json(changed=False, held=found, record=path, changes={}, docker_changed=False,
                             docker_restart=False)
        if state == "present":
            problem = readdress_problem(doc, found, module.params["allow_readdress"])
            if problem:
                try:  # report the document's own problems too, all at once
                    plan_node(runner, doc, record, state)
                except EngineError as exc:
                    problem = "%s; and %s" % (problem, exc.msg)
                raise EngineError(problem, held=found)
        if state in ("present", "absent"):
            plan = plan_node(runner, doc, record, state, diff=module._diff)
    if state == "restart":
        if not service_active(runner, module.params["service"]):
            # a stopped service reads daemon.json when it starts; nothing to restart
            module.exit_json(changed=False, restarted=False, held=found, record=path, changes={},
                             docker_changed=False, docker_restart=False,
                             msg="%s is not running: not restarted" % module.params["service"])
        if not module.check_mode:
            restart_service(runner, module.params["service"], module.params["timeout"])
    if state == "restart" and record is None:
        # after teardown: Docker is back on its own settings, there is no pod network to put back
        return Plan(), path, record, found
    if state in ("restore", "restart"):
        if record is None:
            raise EngineError("no record at %s: nothing to restore" % path)
        plan = plan_node(runner, record["document"], record, "present", kernel_only=True)
    if module.check_mode:
        check_node(runner, plan)
    elif plan.changed:
        apply_node(plan, runner)
    return plan, path, record, found


if __name__ == "__main__":
    main()
