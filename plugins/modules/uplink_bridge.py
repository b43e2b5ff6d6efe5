#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: uplink_bridge
short_description: Move the node's uplink into a Linux bridge in one step, with automatic rollback
description:
  - "The host side of the C(l2_bridge) fabric: the uplink I(uplink) (for example C(eth0)) becomes a port of
    the bridge I(bridge), and every global address of the uplink and every route through it move to the
    bridge: default routes included, in every routing table, with their metric, protocol, scope, source
    address and route metrics. The bridge is created if needed, with the uplink's MTU and MAC address (so
    neighbours' ARP caches and the IPv6 link-local address stay valid)."
  - All of it is one C(ip -batch), so the node is without its address for microseconds; established TCP
    connections (the SSH session of this very task) survive. IPv6 addresses are re-added with C(nodad),
    as they already passed duplicate address detection on this segment.
  - "Try and roll back: after the batch the module checks that the node still reaches its default
    gateway(s) (or I(check_address)); if not, it moves everything back at once and fails. Through the
    action plugin of the same name the module runs B(detached) from the connection (Ansible async), and
    the controller must then confirm over a B(new) connection, by deleting a cookie file that the module
    creates once its own check passed. Without that confirmation within I(rollback_timeout) seconds of the
    move the module rolls back by itself. A dropped SSH session, a controller that dies, or a move that
    cuts the controller off therefore cannot leave the host half-moved or unreachable
    (the pattern of C(community.general.iptables_state))."
  - The state before the move is saved to I(snapshot_path); I(state=absent) uses it to put back exactly
    the uplink's addresses and routes, un-enslave it, and delete the bridge if the move created it and
    nothing else uses it (same try-and-roll-back). The snapshot file is removed after that.
  - A second run with the same parameters changes nothing (and does not detach). Check mode reports the
    batch that would run; with C(--diff) the states before and after.
version_added: 0.2.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
requirements:
  - iproute2 (C(ip)) and, for the check, C(ping) (iputils) on the managed node
options:
  bridge:
    description:
      - The bridge that takes over the uplink (at most 15 characters). Created when missing; an existing
        bridge gets the uplink's MAC address and MTU and keeps its other ports and addresses.
    type: str
    required: true
  uplink:
    description:
      - The interface that carries the node's underlay address. It must not be a bridge or a port of
        another bridge.
      - One of O(uplink) and O(uplink_address) is required.
    type: str
  uplink_address:
    description:
      - The node's underlay address (for example C(podnet_node_ip)); the uplink is the interface that
        holds it. Once the move is done the bridge holds it, and the uplink is the one named in
        O(snapshot_path), or else the bridge's only port.
    type: str
  state:
    description:
      - C(present) moves the uplink into the bridge.
      - C(absent) moves it back to the state in I(snapshot_path); nothing to do when the uplink is not a
        port of the bridge and there is no snapshot.
    type: str
    choices: [present, absent]
    default: present
  check_address:
    description:
      - Addresses that must answer after the change. Default the gateway of every default route (main
        table) through the uplink, one per family; when there is none, nothing is probed.
      - An IPv6 link-local address is probed through the bridge.
    type: list
    elements: str
    default: []
  check_method:
    description:
      - C(ping) needs an ICMP echo reply. C(neigh) needs an ARP (IPv4) or neighbour discovery (IPv6)
        answer on the bridge (the cached entry is dropped first, unless it is permanent), so it also works
        where ICMP is filtered; the addresses must be on-link.
    type: str
    choices: [ping, neigh]
    default: ping
  check_timeout:
    description:
      - Seconds the check keeps trying (all addresses together) before the module rolls back.
    type: int
    default: 5
  rollback_timeout:
    description:
      - The longest time, in seconds from the batch, the host stays changed without the controller's
        confirmation (detached runs only). Must be greater than I(check_timeout).
      - Allow for a new connection to the host (SSH handshake) after the check.
    type: int
    default: 30
  allow_dynamic_address:
    description:
      - Move an uplink whose global address has a finite lifetime (from DHCP or SLAAC, or added with one) or that
        a DHCP client running in this network namespace names. Refused by default, before any change (check mode
        too); the client keeps renewing the address on the uplink, a port of the bridge after the move, and the
        copy on the bridge is gone when its lifetime ends. Give such nodes static addresses, or set this when
        the lease outlives the node's time in the cluster.
    type: bool
    default: false
  snapshot_path:
    description:
      - Where the state before the move is kept, for I(state=absent), the lead's teardown and a boot-time
        restore. Written (atomically) only when the uplink is not yet a port of the bridge.
      - Default C(/etc/podnet/uplink-<bridge>.json).
    type: path
  detach:
    description:
      - Used by the action plugin. C(true) runs the change detached, with the controller's confirmation
        over a new connection, as described above; C(false) applies and checks in the task's own
        connection (for C(connection=local) and boot scripts), still rolling back when the check fails.
    type: bool
    default: true
  _phase:
    description:
      - Internal, set by the action plugin; do not set it in a task. C(plan) validates the input and reports
        the batch without changing anything (the action's first, synchronous call); C(apply) runs it.
    type: str
    choices: [plan, apply]
    default: apply
  _confirm_path:
    description:
      - Internal, set by the action plugin; do not set it in a task. The file on the host whose removal,
        over a new connection, confirms a detached change; without it the change is rolled back.
    type: path
notes:
  - Does not carry over multipath routes, routes using nexthop objects or encapsulation through the uplink
    (the module refuses before any change), route metric locks, route expiry times, or permanent neighbour
    entries. Addresses handed out by DHCP on the uplink keep their remaining lifetime; the DHCP client is
    not told.
  - The persistent network configuration of the host (ifupdown, netplan, NetworkManager) is not changed.
  - Do not set C(async)/C(poll) on the task; the action plugin detaches by itself.
attributes:
  check_mode:
    support: full
    description: Reads the kernel's state and reports the batch it would run; changes nothing.
  diff_mode:
    support: full
    description: The uplink's and the bridge's links, addresses and routes before and after.
  platform:
    support: full
    platforms: linux
    description: Linux with iproute2; needs root (CAP_NET_ADMIN).
  action:
    support: full
    description: The action plugin runs the module detached and confirms from a new connection.
  async:
    support: none
    description: The action plugin uses Ansible's async machinery itself; the task must not set it.
seealso:
  - name: community.general.iptables_state
    description: The same try, confirm-over-a-new-connection, roll-back pattern for firewall rules.
    link: https://docs.ansible.com/ansible/latest/collections/community/general/iptables_state_module.html
"""

EXAMPLES = r"""
- name: Move eth0 into cbr0 (rolled back unless the gateway answers and the controller reconnects)
  podnet.cluster.uplink_bridge:
    bridge: cbr0
    uplink: eth0

- name: Same, but the check is an ARP/NDP answer from two given hosts, within 3 s
  podnet.cluster.uplink_bridge:
    bridge: cbr0
    uplink: eth0
    check_address: [192.0.2.1, "fe80::1"]
    check_method: neigh
    check_timeout: 3
    rollback_timeout: 20

- name: The uplink is whichever interface holds the node's address (before and after the move)
  podnet.cluster.uplink_bridge:
    bridge: cbr0
    uplink_address: 192.0.2.11  # or 192.0.2.11/24: the prefix is ignored

- name: Put eth0 back as it was (teardown)
  podnet.cluster.uplink_bridge:
    bridge: cbr0
    uplink: eth0
    state: absent
"""

RETURN = r"""
commands:
  description: The C(ip -batch) lines run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["link add name cbr0 address 52:54:00:12:34:56 mtu 1500 type bridge", "link set dev eth0 master cbr0",
           "link set dev cbr0 up", "addr add 192.0.2.11/24 broadcast 192.0.2.255 dev cbr0",
           "route del 0.0.0.0/0 via 192.0.2.1 table 254 proto 3 scope 0 metric 0 dev eth0",
           "route add 0.0.0.0/0 via 192.0.2.1 table 254 proto 3 scope 0 metric 0 dev cbr0",
           "addr del 192.0.2.11/24 dev eth0"]
checked:
  description: The reachability probes after the change.
  returned: always
  type: list
  elements: dict
  sample: [{address: 192.0.2.1, ok: true, method: ping, detail: "192.0.2.1 answered ping (attempt 1)"}]
rolled_back:
  description: Whether the change was rolled back (the task then fails).
  returned: always
  type: bool
rollback_commands:
  description: The C(ip -batch) lines of the rollback.
  returned: always
  type: list
  elements: str
rollback_complete:
  description: After a rollback, whether the uplink and the bridge are exactly as before.
  returned: when rolled_back
  type: bool
kept_bridge:
  description: With I(state=absent), why a bridge made by the move is not deleted (other ports, addresses or routes).
  returned: when the bridge is kept
  type: str
uplink:
  description: The uplink (given, or found from O(uplink_address)).
  returned: always
  type: str
  sample: eth0
snapshot_path:
  description: The snapshot file used.
  returned: always
  type: str
  sample: /etc/podnet/uplink-cbr0.json
confirmed:
  description: Whether the controller confirmed the change over a new connection (detached runs).
  returned: when a detached run changed something
  type: bool
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.cluster.plugins.module_utils import uplink as engine
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import ModuleRunner


class ToolRunner(ModuleRunner):
    """The engine's module runner, running a command named by its tool name (``ping``) as found on the node."""

    def __init__(self, module, tools):
        super().__init__(module)
        self.tools = tools

    def run(self, argv, data=None):
        return super().run([self.tools.get(argv[0], argv[0])] + list(argv[1:]), data)


def confirmation(path, deadline, clock=time.monotonic, sleep=time.sleep):
    """A ``confirm()`` for the engine: create ``path``, wait until someone deletes it or ``deadline``.

    Whoever deletes the file first decides: the controller (confirmed) or this function at the
    deadline (not confirmed), so the two can never disagree.
    """
    def confirm():
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            with open(path, "w") as handle:
                handle.write("podnet.cluster.uplink_bridge: delete this file to confirm (pid %d)\n" % os.getpid())
        except OSError as exc:
            return False, "cannot create the confirmation file %s: %s" % (path, exc)
        while clock() < deadline:
            if not os.path.exists(path):
                return True, ""
            sleep(0.1)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return True, ""
        return False, ("no confirmation from the controller over a new connection within rollback_timeout "
                       "after the change")
    return confirm


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bridge=dict(type="str", required=True),
            uplink=dict(type="str"),
            uplink_address=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            check_address=dict(type="list", elements="str", default=[]),
            check_method=dict(type="str", default="ping", choices=list(engine.CHECK_METHODS)),
            check_timeout=dict(type="int", default=5),
            rollback_timeout=dict(type="int", default=30),
            snapshot_path=dict(type="path"),
            allow_dynamic_address=dict(type="bool", default=False),
            detach=dict(type="bool", default=True),
            _phase=dict(type="str", default="apply", choices=["plan", "apply"]),
            _confirm_path=dict(type="path"),
        ),
        required_one_of=[("uplink", "uplink_address")],
        mutually_exclusive=[("uplink", "uplink_address")],
        supports_check_mode=True,
    )
    p = module.params
    bridge, uplink, state = p["bridge"], p["uplink"], p["state"]
    path = p["snapshot_path"] or "/etc/podnet/uplink-%s.json" % bridge
    if p["check_timeout"] < 1:
        module.fail_json(msg="check_timeout: %d; it must be at least 1 second" % p["check_timeout"])
    if p["rollback_timeout"] <= p["check_timeout"]:
        module.fail_json(msg="rollback_timeout (%d s) must be greater than check_timeout (%d s): the check alone may "
                             "take check_timeout seconds, and the controller then needs a new connection to confirm"
                             % (p["rollback_timeout"], p["check_timeout"]))
    tools = {"ip": module.get_bin_path("ip", required=True)}
    runner = ToolRunner(module, tools)
    if uplink is None:
        try:
            uplink = engine.find_uplink(runner, p["uplink_address"], bridge, engine.load_snapshot(path), tools["ip"])
        except engine.UplinkError as exc:
            module.fail_json(msg="%s: %s" % (bridge, exc), bridge=bridge, uplink_address=p["uplink_address"])
    result = dict(changed=False, commands=[], checked=[], rolled_back=False, rollback_commands=[],
                  snapshot_path=path, bridge=bridge, uplink=uplink, state=state)
    saved = None
    try:
        current = engine.read_snapshot(runner, bridge, uplink, tools["ip"])
        if state == "present":
            lines = engine.plan_move(current)
            if lines and not p["allow_dynamic_address"]:
                dynamic = engine.dynamic_addresses(current, uplink)
                clients = engine.dhcp_clients(uplink)
                if dynamic or clients:
                    module.fail_json(msg="%s holds a dynamic address (%s): after the move into %s its DHCP client "
                                         "keeps renewing it on %s, a port of the bridge, and the copy on %s is gone "
                                         "when its lifetime ends. Give the node a static address, or set "
                                         "allow_dynamic_address (podnet_l2_bridge_allow_dynamic_address) to move "
                                         "it anyway; nothing was changed"
                                     % (uplink, "; ".join(dynamic + ["DHCP client %s" % c for c in clients]),
                                        bridge, uplink, bridge), dynamic=dynamic, dhcp_clients=clients, **result)
            predicted = engine.simulate_move(current) if lines else current
            targets = engine.check_targets(current, p["check_address"]) if lines else []
        else:
            saved = engine.load_snapshot(path)
            if saved is None:
                if (current["links"].get(uplink) or {}).get("master") == bridge:
                    module.fail_json(msg="%s is a port of %s but there is no snapshot at %s: without it the addresses "
                                         "and routes that were %s's are unknown; move them back by hand"
                                     % (uplink, bridge, path, uplink), **result)
                lines, predicted, targets = [], current, []
            else:
                if (saved.get("bridge"), saved.get("uplink")) != (bridge, uplink):
                    module.fail_json(msg="%s holds the snapshot of %s/%s, not of bridge %s and uplink %s"
                                     % (path, saved.get("bridge"), saved.get("uplink"), bridge, uplink), **result)
                lines = engine.plan_restore(saved, current)
                predicted = saved
                targets = engine.check_targets(saved, p["check_address"]) if lines else []
                kept = engine.bridge_kept(saved, current)
                if kept:
                    result["kept_bridge"] = kept
                    module.warn("%s is not deleted: %s" % (bridge, kept))
    except engine.UplinkError as exc:
        module.fail_json(msg="%s/%s: %s" % (bridge, uplink, exc), **result)
    remove_only = state == "absent" and saved is not None and not lines  # restored already, by hand or a cut run
    result.update(changed=bool(lines) or remove_only, commands=lines)
    if module._diff:
        result["diff"] = {"before": engine.render(current), "after": engine.render(predicted),
                          "before_header": "%s and %s" % (uplink, bridge), "after_header": "%s and %s" % (uplink, bridge)}
    if not lines or module.check_mode or p["_phase"] == "plan":
        if remove_only and not module.check_mode and p["_phase"] == "apply":
            os.unlink(path)
        module.exit_json(**result)

    # ---- every change below ----
    if targets:
        tools["ping"] = module.get_bin_path("ping", required=True)
    started = time.monotonic()
    confirm = None
    if p["_confirm_path"]:
        confirm = confirmation(p["_confirm_path"], started + p["rollback_timeout"])
    wrote_snapshot = False
    try:
        if state == "present":
            if (current["links"].get(uplink) or {}).get("master") != bridge:
                engine.save_snapshot(path, current)
                wrote_snapshot = True
            elif not os.path.exists(path):
                module.warn("%s is already a port of %s (an interrupted move?) and there is no snapshot at %s; "
                            "none is written, so state=absent cannot restore it" % (uplink, bridge, path))
            outcome = engine.move(runner, bridge, uplink, p["check_address"], p["check_method"], p["check_timeout"],
                                  confirm, before=current, ip=tools["ip"])
        else:
            outcome = engine.restore(runner, saved, p["check_address"], p["check_method"], p["check_timeout"],
                                     confirm, ip=tools["ip"])
    except (engine.UplinkError, OSError) as exc:
        module.fail_json(msg="%s/%s: %s" % (bridge, uplink, exc), **result)
    result.update(commands=outcome["commands"], checked=outcome["checked"], rolled_back=outcome["rolled_back"],
                  rollback_commands=outcome["rollback_commands"])
    if confirm is not None:
        result["confirmed"] = outcome["error"] is None
    if module._diff:
        result["diff"]["after"] = engine.render(outcome["after"])
    if outcome["error"]:
        result["rollback_complete"] = outcome.get("rollback_complete")
        if wrote_snapshot and outcome.get("rollback_complete"):
            os.unlink(path)
        what = "move of %s into %s" % (uplink, bridge) if state == "present" else "restore of %s" % uplink
        module.fail_json(msg="%s rolled back: %s%s" % (
            what, outcome["error"],
            "" if outcome.get("rollback_complete") else " -- the host may need repair by hand (console)"), **result)
    if state == "absent":
        os.unlink(path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
