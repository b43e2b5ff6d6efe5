#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Module podnet.cluster.probe: run many TCP probes at once, from the node or from its probe pods."""

from __future__ import annotations

DOCUMENTATION = r"""
module: probe
short_description: Run many connectivity probes at once, from the node or from pods on it
version_added: 0.1.0
author: podnet.cluster maintainers (!UNKNOWN)
description:
  - Runs every probe of O(probes) concurrently (a thread pool, one module call) and reports, per probe,
    whether a podnet probe server answered, the address the client used (C(local), what the source sees
    itself as) and the address the server saw the connection come from (C(seen), what others see).
    The two differ exactly when the path translated the source address (NAT).
  - A probe starts in the node's own network namespace, or, with C(source_netns), in another one such as a
    probe pod's C(/proc/PID/ns/net) (see M(podnet.cluster.probe_pod)); the socket is created inside that
    namespace (C(setns) on the worker thread), so routing and source-address selection are the pod's.
  - The servers are those started by M(podnet.cluster.probe_pod); the protocol is one JSON line each way
    (see C(plugins/module_utils/probe.py)).
  - Also returns the node's own global addresses (C(ip -json address)), so a caller can tell whether an
    address a server saw belongs to this node.
  - Never fails because a probe failed; failures are data. It fails only on invalid parameters.
  - Target side, Python 3.8 or later (the oldest target Python of ansible-core 2.19; tested), standard
    library, root (entering another network namespace needs
    C(CAP_SYS_ADMIN)).
options:
  probes:
    description: The probes to run.
    type: list
    elements: dict
    required: true
    suboptions:
      id:
        description: Identifier of the probe, returned with its result.
        type: str
        required: true
      target:
        description: IP address (IPv4 or IPv6) to connect to.
        type: str
        required: true
      port:
        description: TCP port; default O(port).
        type: int
      source_netns:
        description:
          - Network namespace file to probe from (C(/proc/PID/ns/net), C(/run/netns/NAME)); C(null) for the
            node itself.
        type: str
      connect_only:
        description:
          - Only open the TCP connection (for a target that does not speak the probe protocol); C(seen) and
            C(server) stay C(null).
        type: bool
        default: false
      meta:
        description: Free data returned unchanged with the result (e.g. what the caller expects).
        type: dict
  port:
    description: Default TCP port of the probes.
    type: int
    default: 47300
  timeout:
    description: Seconds each probe may take (connect and answer together).
    type: float
    default: 3
  name:
    description: Name the client announces to the servers (they echo it back); default the host name.
    type: str
  max_parallel:
    description: Probes in flight at once.
    type: int
    default: 64
  retries:
    version_added: 0.2.0
    description:
      - Further attempts of a probe that failed, made once every probe of the previous round is done,
        after a pause of half a second. A probe that answers only on a later attempt is ok; its result
        says how many attempts it took and why the first failed (RV(probes[].first_error)).
    type: int
    default: 1
  self_checks:
    version_added: 0.2.0
    description:
      - Probes of this node's own probe servers from inside their own namespaces (a pod to its own address, the
        node to its node IP), run after O(probes) with the same retries. They prove that a server serves, so
        that a failure to reach it from elsewhere is the network's, not verify's. Same form as O(probes).
    type: list
    elements: dict
    default: []
  diagnose:
    version_added: 0.2.0
    description:
      - For at most this many failed probes (after the retries) whose connection got no answer or no route,
        look at the source's route and neighbour entry for the target (C(ip route get), C(ip neigh)) and say
        what was found (RV(probes[].diagnosis), RV(probes[].neighbour)). C(0) - never.
    type: int
    default: 20
attributes:
  check_mode:
    support: full
    description:
      - Runs in check mode as in a normal run. A probe only opens TCP connections and reads addresses; it
        changes no configuration, so the answer in check mode is the real answer. (The probe pods it talks
        to are made by M(podnet.cluster.probe_pod), which does change the node.)
  diff_mode:
    support: none
    description: A probe changes nothing, so there is nothing to show.
notes:
  - C(changed) is always false.
seealso:
  - module: podnet.cluster.probe_pod
"""

EXAMPLES = r"""
- name: Probe a pod on another node from this node's probe pod, and from the node itself
  podnet.cluster.probe:
    timeout: 3
    probes:
      - id: pod-to-pod
        source_netns: "{{ pod.netns }}"
        target: 10.244.2.2
      - id: node-to-pod
        target: 10.244.2.2
  register: probes

- name: Show what the server saw
  ansible.builtin.debug:
    msg: "{{ probes.probes | map(attribute='seen') }}"
"""

RETURN = r"""
probes:
  description: One result per probe, in the order of O(probes).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The probe's id.
      type: str
    target:
      description: The target address.
      type: str
    port:
      description: The TCP port.
      type: int
    source_netns:
      description: The namespace the probe started in (C(null) - the node).
      type: str
    ok:
      description: A podnet probe server answered (with C(connect_only) - the connection was established).
      type: bool
    connected:
      description: The TCP connection was established.
      type: bool
    error:
      description: Why the probe failed (C(timeout (connect, 3.0 s)), C(connection refused (connect)), ...).
      type: str
    local:
      description: The client's own address on the connection (what the source sees itself as).
      type: str
    seen:
      description: The address the server saw the connection come from.
      type: str
    server:
      description: The name of the server that answered.
      type: str
    server_hostname:
      description: The host name of the server that answered.
      type: str
    elapsed_ms:
      description: Milliseconds the probe took.
      type: int
    attempts:
      description: Attempts made (1 - the first one answered or O(retries) is 0).
      type: int
    first_error:
      description: Why the first attempt failed, when a later one was made.
      type: str
    diagnosis:
      description:
        - For a failed probe (see O(diagnose)) - the source's route and the state of its neighbour entry for the
          next hop, in words (C(next hop 10.244.1.1 on eth0 - neighbour FAILED (no ARP/NDP answer))).
      type: str
    neighbour:
      description:
        - The state of that neighbour entry - C(ok) (reachable, stale, delay, probe, permanent), C(failed)
          (no answer to ARP/NDP; also when the entry is already gone and the kernel refused no entry for a full
          table during the probes), C(incomplete), C(missing) (there is none although the kernel needed one,
          and its neighbour table was full during the probes, or that is unknown), C(none) (no route), or
          C(null) when not diagnosed.
      type: str
    meta:
      description: The probe's O(probes[].meta), unchanged.
      type: dict
  sample:
    - id: "pod_pod|4|node1|node2"
      target: 10.244.1.2
      port: 47300
      source_netns: /proc/4242/ns/net
      ok: true
      connected: true
      error: null
      local: 10.244.0.2
      seen: 10.244.0.2
      server: podnet-verify-node2
      server_hostname: node2
      elapsed_ms: 2
addresses:
  description: The node's global addresses (without prefix length).
  returned: always
  type: list
  elements: str
  sample: [172.30.77.11, 10.244.0.1]
ok_count:
  description: Probes that succeeded.
  returned: always
  type: int
failed_count:
  description: Probes that failed.
  returned: always
  type: int
hostname:
  description: The node's host name.
  returned: always
  type: str
self_checks:
  description: The results of O(self_checks), in the same form as RV(probes).
  returned: always
  type: list
  elements: dict
neighbour_table_full:
  description:
    - How many times the kernel refused a new ARP entry during the run (C(table_fulls) of
      C(/proc/net/stat/arp_cache), summed over the CPUs); C(null) where the statistics are not readable (in a
      network namespace other than the machine's own).
  returned: always
  type: int
"""

import ipaddress
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, ModuleRunner
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import run_ip_json
from ansible_collections.podnet.cluster.plugins.module_utils.probe import normalize_address, run_probes


def node_addresses(module):
    try:
        links = run_ip_json(ModuleRunner(module), ["address", "show"], numeric=False)
    except EngineError as exc:
        module.fail_json(msg=exc.msg)
    result = []
    for link in links:
        for info in link.get("addr_info", []):
            if info.get("scope") == "global" and info.get("local"):
                result.append(normalize_address(info["local"]))
    return result


def table_fulls():
    """Times the kernel refused a new ARP or NDP entry so far (None: the statistics are not readable here)."""
    total = None
    for path in ("/proc/net/stat/arp_cache", "/proc/net/stat/ndisc_cache"):
        try:
            with open(path) as handle:
                lines = handle.read().split("\n")
        except OSError:
            continue
        header = lines[0].split()
        if "table_fulls" not in header:
            continue
        column = header.index("table_fulls")
        for line in lines[1:]:
            fields = line.split()
            if len(fields) > column:
                total = (total or 0) + int(fields[column], 16)
    return total


NEIGH_OK = ("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP")


def missing_entry(where, table_full):
    """(neighbour state, words) when the source holds no neighbour entry for the next hop after a failed probe.

    The kernel needed one, so either it could not make one (its table was full: it counts that in
    ``table_fulls``) or it made one, got no ARP/NDP answer and has already dropped the failed entry (it does so
    at once when nothing holds it). ``table_full``: the count during the probes (None: not readable here).
    """
    if table_full == 0:
        return "failed", ("%s: neighbour FAILED (no ARP/NDP answer: the link or the bridge to it drops it, or it "
                          "is not there; the kernel has already dropped the failed entry, and its neighbour table "
                          "was never full during the probes)" % where)
    if table_full:
        return "missing", ("%s: no neighbour entry although the kernel needed one, and the kernel refused %d new "
                           "entries for a full table during the probes" % (where, table_full))
    return "missing", "%s: no neighbour entry although the kernel needed one (its neighbour table may be full)" % where


def diagnose(module, result, table_full=None):
    """(neighbour state, words) about the source's route and next hop for a failed probe; ``table_full``: how
    many new neighbour entries the kernel refused for a full table during the probes (None: unknown)."""
    runner, netns = ModuleRunner(module), result.get("source_netns")
    target = result["target"]
    try:
        route = (run_ip_json(runner, ["route", "get", target], numeric=False, netns=netns) or [{}])[0]
    except EngineError as exc:
        if exc.details.get("rc") is None:
            return None, None       # not JSON
        return "none", "the source has no route to %s (%s)" % (target, exc.msg)
    hop = route.get("gateway") or target
    dev = route.get("dev")
    if route.get("type") in ("local", "blackhole", "unreachable", "prohibit"):
        return "none", "the source's route to %s is of type %s" % (target, route.get("type"))
    if not dev or dev == "lo":
        return None, None
    try:
        entries = run_ip_json(runner, ["neigh", "show", "to", hop, "dev", dev], numeric=False, tolerate=True,
                              netns=netns)
    except EngineError:
        entries = []
    where = "next hop %s on %s" % (hop, dev)
    if not entries:
        return missing_entry(where, table_full)
    states = [str(s).upper() for s in entries[0].get("state") or []]
    if any(s in NEIGH_OK for s in states):
        return "ok", "%s answers ARP/NDP (%s): the packets are lost beyond it" % (where, ", ".join(states))
    if "FAILED" in states:
        return "failed", "%s: neighbour FAILED (no ARP/NDP answer: the link or the bridge to it is down, or it is not there)" % where
    if "INCOMPLETE" in states:
        return "incomplete", "%s: neighbour INCOMPLETE (no ARP/NDP answer yet)" % where
    return "other", "%s: neighbour %s" % (where, ", ".join(states) or "in no known state")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            probes=dict(type="list", elements="dict", required=True, options=dict(
                id=dict(type="str", required=True),
                target=dict(type="str", required=True),
                port=dict(type="int"),
                source_netns=dict(type="str"),
                connect_only=dict(type="bool", default=False),
                meta=dict(type="dict"),
            )),
            port=dict(type="int", default=47300),
            timeout=dict(type="float", default=3.0),
            name=dict(type="str"),
            max_parallel=dict(type="int", default=64),
            retries=dict(type="int", default=1),
            self_checks=dict(type="list", elements="dict", default=[]),
            diagnose=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg="timeout must be positive, got %s" % params["timeout"])
    probes = []
    errors = []
    for probe in list(params["probes"]) + list(params["self_checks"]):
        probe = dict(probe)
        if probe.get("port") is None:
            probe["port"] = params["port"]
        try:
            ipaddress.ip_address(probe["target"])
        except ValueError:
            errors.append("probe %s: target %r is not an IP address" % (probe["id"], probe["target"]))
        if not 1 <= int(probe["port"]) <= 65535:
            errors.append("probe %s: port %s is not a TCP port" % (probe["id"], probe["port"]))
        probes.append(probe)
    if errors:
        module.fail_json(msg="invalid probes: %s" % "; ".join(errors), errors=errors)

    fulls_before = table_fulls()
    results = run_probes(probes, timeout=params["timeout"], client_name=params["name"] or socket.gethostname(),
                         max_parallel=max(1, params["max_parallel"]), retries=max(0, params["retries"]))
    fulls_after = table_fulls()
    table_full = None if fulls_before is None or fulls_after is None else fulls_after - fulls_before
    count = len(params["probes"])
    results, checks = results[:count], results[count:]
    budget = max(0, params["diagnose"])
    seen = {}
    for result in results:
        error = result.get("error") or ""
        if result["ok"] or not any(w in error for w in ("timeout (connect", "unreachable", "no route")):
            continue
        key = (result.get("source_netns"), result["target"])
        if key not in seen:
            if budget <= 0:
                continue
            budget -= 1
            seen[key] = diagnose(module, result, table_full)
        result["neighbour"], result["diagnosis"] = seen[key]
    ok = sum(1 for r in results if r["ok"])
    module.exit_json(changed=False, probes=results, self_checks=checks, addresses=node_addresses(module),
                     ok_count=ok, failed_count=len(results) - ok, hostname=socket.gethostname(),
                     neighbour_table_full=table_full)


if __name__ == "__main__":
    main()
