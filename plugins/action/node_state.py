# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Action for podnet.cluster.node_state: builds the node document on the controller, runs the module once.

The plan is read straight from the registered variable (``plan_var``, default ``podnet_plan``) instead of
being templated into the task's arguments, so a cluster of thousands of nodes costs each host only its own
document (see docs/performance.md).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.podnet.cluster.plugins.module_utils.text import capped, names as names_text
from ansible_collections.podnet.cluster.plugins.plugin_utils.action import PodnetAction
from ansible_collections.podnet.cluster.plugins.plugin_utils.checked import (
    document_digest,
    proven_unchanged,
    unchanged_result,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.hostvars import other_host_values
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import (
    DEFAULTS,
    as_read,
    build_document,
    fabric_errors,
    setting_errors,
    teardown_document,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError
from ansible_collections.podnet.cluster.plugins.plugin_utils.node_report import file_verbs, readable_diff, summarize
from ansible.utils.display import Display

display = Display()

ARGUMENT_SPEC: Dict[str, Any] = {
    "state": {"type": "str", "choices": ["present", "absent", "probe", "restore", "restart", "validate"],
              "default": "present"},
    "service": {"type": "str", "default": "docker"},
    "timeout": {"type": "int", "default": 120},
    "settings": {"type": "dict", "default": {}},
    "plan_var": {"type": "str", "default": "podnet_plan"},
    "document": {"type": "dict"},
    "cluster_cidrs": {"type": "list", "elements": "str", "default": []},
    "group": {"type": "str", "default": "podnet_nodes"},
    "router_group": {"type": "str", "default": "podnet_routers"},
    "fabric_checks": {"type": "bool", "default": True},
    "checked": {"type": "dict"},
}
MAX_LISTED = 20


def cluster_wide(error: str, host: str, task_vars: Dict[str, Any]) -> str:
    """A mistake in a variable that every node of the play has with the same value (a group variable) is told once,
    in full, by the first of them; the others say where, in one line."""
    m = re.match(r"host (\S+): (podnet_\w+)\b", error)
    if not m or m.group(1) != host:
        return error
    var = m.group(2)
    hostvars = task_vars.get("hostvars") or {}
    hosts = [str(h) for h in task_vars.get("ansible_play_hosts_all") or []
             if str(h) in ((task_vars.get("groups") or {}).get("podnet_nodes") or [h])]
    if len(hosts) < 2 or host not in hosts:
        return error
    try:
        values = [plain(hostvars[h][var]) if var in hostvars[h] else None for h in hosts]
    except Exception:  # pylint: disable=broad-except  # a value that cannot be read: say it per host
        return error
    if values[0] is None or any(v != values[0] for v in values):
        return error
    first = sorted(hosts)[0]
    rest = error[m.end():]
    if host == first:
        return "hosts %s (every node of this run, the same value: a group variable?): %s%s" % (
            names_text(sorted(hosts), 5), var, rest)
    return "host %s: %s: the same value as on every node, reported once by host %s" % (host, var, first)


def _grouped(problems: List[str], nodes: List[str]) -> List[str]:
    """The same problem on several hosts (a group variable) told once, naming them all."""
    order: List[str] = []
    hosts: Dict[str, List[str]] = {}
    for problem in problems:
        m = re.match(r"host (\S+): (.*)$", problem, re.S)
        key = m.group(2) if m else problem
        if key not in hosts:
            order.append(key)
            hosts[key] = []
        if m:
            hosts[key].append(m.group(1))
    out = []
    for key in order:
        named = hosts[key]
        if not named:
            out.append(key)
        elif len(named) == 1:
            out.append("host %s: %s" % (named[0], key))
        else:
            note = " (every node of this run, the same value: a group variable?)" if len(named) == len(nodes) else ""
            out.append("hosts %s%s: %s" % (names_text(named, 5), note, key))
    return out


class ActionModule(PodnetAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, result, task_vars, args):
        host = self._task.delegate_to or task_vars.get("inventory_hostname")
        if "settings" not in self._task.args:
            args["settings"] = self._own_settings(task_vars)
        if args["state"] == "validate":
            return self._validate(result, task_vars, args)
        document = args.get("document")
        no_plan = not isinstance(task_vars.get(args["plan_var"]), dict)
        if document is None and (args["state"] == "absent" or (args["state"] == "restart" and no_plan)):
            # Teardown needs no plan: the node's record says what its last converge made; without a record only
            # what carries podnet.cluster's names and marks goes (the bridge's link stays).
            try:
                document = teardown_document(str(task_vars.get("inventory_hostname")), plain(args["settings"]))
            except PlanError as exc:
                result.update(failed=True, msg="podnet.cluster.node_state: %s" % "; ".join(exc.errors),
                              errors=exc.errors)
                return result
        if document is None and args["state"] == "probe":
            # Before the plan: what the node holds needs only where its record is and its bridge's name.
            s = dict(DEFAULTS)
            s.update({k: v for k, v in plain(args["settings"]).items() if v is not None})
            document = {"version": 1, "node": str(task_vars.get("inventory_hostname")), "state_dir": s["state_dir"],
                        "lib_dir": s["lib_dir"], "bridge": {"name": s["bridge"]},
                        "owned_cidrs": [str(c) for c in args["cluster_cidrs"]]}
        if document is None:
            unknown = sorted(set(args["settings"]) - set(DEFAULTS))
            if unknown:
                raise AnsibleActionFail("podnet.cluster.node_state: unknown settings %s (known: %s)"
                                        % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
            plan = task_vars.get(args["plan_var"])
            if not isinstance(plan, dict) or "nodes" not in plan:
                raise AnsibleActionFail("host %s: no plan in the variable %s; run the role podnet.cluster.plan first in "
                                        "the same play (podnet.cluster.site does)" % (host, args["plan_var"]))
            try:
                document = build_document(plan, str(task_vars.get("inventory_hostname")), plain(args["settings"]))
            except PlanError as exc:
                errors = [e if re.search(r"\b%s\b" % re.escape(str(host)), e) else "host %s: %s" % (host, e)
                          for e in exc.errors]
                errors = [cluster_wide(e, str(host), task_vars) for e in errors]
                result.update(failed=True, msg="podnet.cluster.node_state: %s" % "; ".join(errors), errors=errors)
                return result
        # A confirmation for this run, not desired state: never part of the document (nor of the node's record).
        allow = bool(plain(args["settings"]).get("allow_readdress", False))
        converges = args["state"] in ("present", "absent")
        digest = document_digest(document, args["state"], allow) if converges else None
        if converges and proven_unchanged(args.get("checked"), digest):
            # A node whose check in this run found nothing to change for this very document is not asked again:
            # a run that changes nothing costs one module call per node, not two.
            result.update(unchanged_result(args["checked"]))
            return result
        module_args = {"document": document, "state": args["state"], "service": args["service"],
                       "timeout": args["timeout"], "allow_readdress": allow}
        result.update(self._execute_module(module_name="podnet.cluster.node_state", module_args=module_args,
                                           task_vars=task_vars))
        if converges and not result.get("failed"):
            # changed_when cannot hide these: the apply of the same run compares them (option checked)
            result.update(document_digest=digest, would_change=bool(result.get("changed")))
            # The playbooks include a node's fabric steps (its uplink's move, the Compute Engine routes of a fabric
            # it left) only where this says there are any.
            result["fabric_steps"] = bool(result.get("uplink_release") or result.get("uplink_move")
                                          or result.get("recorded_fabric") == "gce")
            if result.get("changed"):
                self._readable(result, str(task_vars.get("inventory_hostname")), document, args["state"], task_vars)
        return result

    def _readable(self, result: Dict[str, Any], host: str, document: Dict[str, Any], state: str,
                  task_vars: Dict[str, Any]) -> None:
        """A one-line summary (C(summary), C(msg)), and under --diff what changes on the node, named by host."""
        lib_dir = str(document.get("lib_dir") or "/var/lib/podnet")
        changes = result.get("changes") if isinstance(result.get("changes"), dict) else {}
        restart = bool(result.get("docker_restart")) and state == "present" and \
            boolean(self._templar.template(task_vars.get("podnet_docker_restart", True)), strict=False)
        summary = summarize(changes, lib_dir, docker_restart=restart, removing=state == "absent",
                            verbs=file_verbs(result.get("diff")))
        result["summary"] = summary
        result.setdefault("msg", summary)
        if "diff" in result:
            result["diff"] = readable_diff(host, result["diff"], changes, lib_dir, verbose=display.verbosity >= 1,
                                           summary=summary)

    def _validate(self, result: Dict[str, Any], task_vars: Dict[str, Any], args: Dict[str, Any]) -> Dict[str, Any]:
        """Every node's settings and what its fabric needs, checked on the controller before any node is asked
        anything (run once): each node's podnet_* variables as its hostvars hold them, over this task's settings.

        Returns C(fabrics), each node's fabric, for the fabric roles (the routers route only the nodes of fabric
        router; the Compute Engine routes of a fabric left behind are removed).
        """
        groups = task_vars.get("groups") or {}
        play = set(task_vars.get("ansible_play_hosts_all") or [])
        nodes = [h for h in groups.get(args["group"], []) if not play or h in play]
        hostvars = task_vars.get("hostvars", {})
        me = task_vars.get("inventory_hostname")
        base = plain(args["settings"])
        unknown = sorted(set(base) - set(DEFAULTS))
        if unknown:
            raise AnsibleActionFail("podnet.cluster.node_state: unknown settings %s (known: %s)"
                                    % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
        problems: List[str] = []
        fabrics: Dict[str, Any] = {}
        extra: Dict[str, Dict[str, Any]] = {}
        valid: set = set()
        # this host's own values as the task sees them (booleans read as the role reads them), to tell which of the
        # task's settings are its own and not the other hosts'
        mine = as_read(self._podnet_vars(hostvars[me])) if me in hostvars else {}
        defaults = {k: DEFAULTS[k] for k in base}
        for host in nodes:
            hv = hostvars[host] if host != me else {}
            settings = other_host_values(base, mine, self._podnet_vars(hv), defaults) if host != me else dict(base)
            key = json.dumps(settings, sort_keys=True, default=str)
            if key not in valid:
                errors = setting_errors(str(host), settings)
                if errors:
                    problems.extend(errors)
                else:
                    valid.add(key)
            fabrics[str(host)] = settings.get("fabric", DEFAULTS["fabric"])
            if fabrics[str(host)] == "gce":
                extra[str(host)] = {name: self._host_var(hv if host != me else task_vars, name)
                                    for name in ("podnet_gce_project", "podnet_gce_zone", "podnet_gce_instance",
                                                 "zone", "selfLink")}
        if args["fabric_checks"] and not problems:
            problems.extend(fabric_errors(fabrics, list(groups.get(args["router_group"]) or []),
                                          args["router_group"], extra))
        problems = _grouped(problems, [str(h) for h in nodes])
        if problems:
            listed = capped(problems, MAX_LISTED)
            result.update(failed=True, errors=problems,
                          msg="podnet.cluster.node_state: the variables are not valid; no node was asked anything "
                              "and nothing was changed:\n- %s" % "\n- ".join(listed))
            return result
        fabric_set = sorted(set(fabrics.values()))
        routers = sorted(str(h) for h in groups.get(args["router_group"]) or [] if not play or h in play)
        # The playbooks include the steps of the routers and of the Compute Engine routes only where there are
        # any, so that a node of a cluster without them runs no task of theirs (each skipped task costs a fork
        # per host on the controller).
        gce_steps = "gce" in fabric_set or bool(self._host_var(task_vars, "podnet_gce_project"))
        result.update(changed=False, fabrics=fabrics, fabric_set=fabric_set, routers=routers, gce_steps=gce_steps,
                      checked=len(nodes), msg="The variables of %d node(s) are valid" % len(nodes))
        return result

    def _own_settings(self, task_vars: Dict[str, Any]) -> Dict[str, Any]:
        """The settings of this task's host: its C(podnet_<setting>) variables (the role's defaults among them when
        the task is the role's), each templated on its own, as the role reads them (C(as_read)).

        Read here rather than handed over as a task argument of about 30 templates, which every host-task's worker
        would compile again (a tenth of a converging C(site)'s CPU on the controller)."""
        return as_read(self._podnet_vars(task_vars, self._templar.template))

    @staticmethod
    def _podnet_vars(hv: Any, render: Any = None) -> Dict[str, Any]:
        """The settings a host's variables set (podnet_<setting>), by setting name; ``render`` templates each value
        (hostvars give them templated already)."""
        found: Dict[str, Any] = {}
        for key in DEFAULTS:
            name = "podnet_%s" % key
            if name in hv:
                found[key] = plain(render(hv[name]) if render else hv[name])
        return found

    def _host_var(self, variables: Any, name: str) -> Any:
        """A variable of a host (its hostvars, or this task's variables), templated; None when unset or failing."""
        try:
            if name not in variables:
                return None
            value = variables[name]
            return plain(self._templar.template(value)) if isinstance(value, str) else plain(value)
        except Exception:  # an unrelated variable that does not template: treated as unset
            return None
