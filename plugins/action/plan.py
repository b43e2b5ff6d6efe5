# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Action for podnet.cluster.plan: runs on the controller, once (see the module doc)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.module_utils.common.text.converters import to_native
from ansible.utils.display import Display

from ansible_collections.podnet.cluster.plugins.module_utils.text import capped, names as names_text
from ansible_collections.podnet.cluster.plugins.plugin_utils.action import PodnetAction
from ansible_collections.podnet.cluster.plugins.plugin_utils import plan as planner
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_inputs import config_errors, default_interfaces
from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import OVERLAY_FABRICS
from ansible_collections.podnet.cluster.plugins.plugin_utils.hostvars import other_host_values
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_role_spec import PLAN_ROLE_OPTIONS
from ansible_collections.podnet.cluster.plugins.plugin_utils import state as statefile

display = Display()

ARGUMENT_SPEC: Dict[str, Any] = {
    "cluster_cidrs": {"type": "list", "elements": "raw", "default": ["10.244.0.0/16"]},
    "node_prefix_ipv4": {"type": "raw", "default": 24},
    "node_prefix_ipv6": {"type": "raw", "default": 64},
    "service_cidrs": {"type": "list", "elements": "raw", "default": []},
    "reserved_cidrs": {"type": "list", "elements": "raw", "default": []},
    "state_file": {"type": "path"},
    "previous_state_file": {"type": "path"},
    "read_only": {"type": "bool", "default": False},
    "group": {"type": "str", "default": "podnet_nodes"},
    "prune": {"type": "bool", "default": False},
    "release_nodes": {"type": "list", "elements": "str", "default": []},
    "allow_readdress": {"type": "bool", "default": False},
    "held_var": {"type": "str", "default": "__podnet_held"},
    "probed_var": {"type": "str", "default": ""},
    "recorded_only": {"type": "bool", "default": False},
    "adopt": {"type": "bool", "default": True},
    "check_role_vars": {"type": "bool", "default": False},
    "node_part": {"type": "bool", "default": False},
    "plan_var": {"type": "str", "default": "podnet_plan"},
    "node": {"type": "str"},
    "warn_absent": {"type": "bool", "default": True},
}

MAX_HOSTS_LISTED = 20


def planner_hosts(hosts: List[str], limit: int = 10) -> str:
    """``a, b and 3 more``: the hosts a cluster-wide problem was seen on."""
    return names_text(hosts, limit)


class ActionModule(PodnetAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC
    _requires_connection = False

    def act(self, result, task_vars, args):

        if args["check_role_vars"]:
            return self._check_role_vars(result, task_vars)
        if args["node_part"]:
            return self._node_part(result, task_vars, args["plan_var"], args["node"])

        group = args["group"]
        hosts: List[str] = list(task_vars.get("groups", {}).get(group, []))
        if not hosts:
            raise AnsibleActionFail("podnet.cluster.plan: the inventory group %r has no hosts; put every node of "
                                    "the cluster in it" % group)
        path = args["state_file"]
        if not path or not str(path).strip() or str(path).startswith("None/"):
            raise AnsibleActionFail("podnet.cluster.plan: podnet_state_file is not set and the inventory is not a file "
                                    "or a directory to keep it beside; set podnet_state_file to the path of the plan's "
                                    "state file (back it up with your inventory)")
        source = statefile.source(path, args["previous_state_file"])
        config = planner.PlanConfig(
            cluster_cidrs=plain(args["cluster_cidrs"]),
            node_prefix_ipv4=plain(args["node_prefix_ipv4"]),
            node_prefix_ipv6=plain(args["node_prefix_ipv6"]),
            service_cidrs=plain(args["service_cidrs"]),
            reserved_cidrs=plain(args["reserved_cidrs"]),
            keep_absent=not args["prune"],
            release=plain(args["release_nodes"]),
            allow_readdress=args["allow_readdress"],
            read_only=args["read_only"],
        )
        if args["recorded_only"]:
            # Which nodes the state file records: the others are asked what they hold before the plan, and so are
            # recorded nodes whose blocks no longer fit the variables (a block no node holds is planned anew).
            try:
                with statefile.locked(source, write=False):
                    old, _text = statefile.read(source)
            except (statefile.StateFileError, OSError) as exc:
                result.update(failed=True, msg="podnet.cluster.plan: %s" % to_native(exc))
                return result
            recorded = sorted(str(n) for n in ((old or {}).get("nodes") or {})) if isinstance(old, dict) else []
            unrecorded = [h for h in hosts if h not in recorded]
            misfits = planner.recorded_misfits(config, old, hosts) if recorded else []
            probe = [h for h in hosts if (h in unrecorded and args["adopt"]) or h in misfits]
            gather = self._to_gather(hosts, task_vars)
            wanted = set(probe) | set(gather)
            result.update(changed=False, recorded=recorded, unrecorded=unrecorded, probe=probe, gather=gather,
                          ask=[h for h in hosts if h in wanted])
            return result
        hostvars = task_vars["hostvars"]
        probed = self._probed(task_vars, args["probed_var"])
        nodes = []
        for host in hosts:
            hv = hostvars[host]
            facts = plain(hv.get("ansible_facts", {}) or {})
            probe = plain(hv.get(args["held_var"])) if probed is None or host in probed else None
            held = None
            if isinstance(probe, dict) and isinstance(probe.get("held"), dict):
                held = list(probe["held"].get("recorded") or []) + list(probe["held"].get("gateways") or [])
            nodes.append(planner.NodeInput(
                name=str(host),
                node_ip=plain(hv.get("podnet_node_ip")),
                fact_ipv4=facts.get("default_ipv4"),
                fact_ipv6=facts.get("default_ipv6"),
                fact_interfaces=default_interfaces(facts),
                pod_cidrs=plain(hv.get("podnet_pod_cidrs")),
                held=held,
                any_underlay=hv.get("podnet_fabric") in OVERLAY_FABRICS,
            ))
        check_mode = bool(self._task.check_mode)

        waited = 0.0
        try:
            with statefile.locked(path, write=not check_mode) as lock:
                waited = lock["waited"]
                source = statefile.source(path, args["previous_state_file"])
                old, old_text = statefile.read(source)
                outcome = planner.make_plan(config, nodes, old, state_source="state file %s" % source)
                new_text = statefile.render(outcome.state)
                changed = outcome.state != old or source != path
                if changed and not check_mode:
                    statefile.write_atomic(path, new_text)
                    if source != path:
                        statefile.retire(source)
        except planner.PlanError as exc:
            result.update(failed=True, errors=exc.errors,
                          msg="podnet.cluster.plan: the plan is not valid, nothing was changed (state file %s "
                              "untouched):\n- %s" % (path, "\n- ".join(exc.errors)))
            return result
        except (statefile.StateFileError, OSError) as exc:
            result.update(failed=True, msg="podnet.cluster.plan: %s" % to_native(exc))
            return result

        table = outcome.as_dict()
        # The table sits at the top of the result: registered as podnet_plan (run_once), every host shares
        # this one object. A fact would be deep-copied for every host and every task (O(N^2) on N hosts).
        result.update(table)
        result.update(
            changed=changed,
            state_file=path,
            added=outcome.added,
            released=outcome.released,
            absent=outcome.absent,
        )
        if source != path:
            result["moved_from"] = source
            display.display("podnet.cluster.plan: the state file %s %s %s (a name Ansible does not read as "
                            "inventory)" % (source, "would move to" if check_mode else "moved to", path))
        if outcome.absent and args["warn_absent"]:
            # every run says which recorded nodes left the inventory, with their blocks, and how to release them
            result["warnings"] = [planner.departed_message(outcome.absent)]
        if waited >= 0.05:
            result["lock_waited"] = waited
            display.display("podnet.cluster.plan: waited %.1f s for the lock %s.lock held by another run"
                            % (waited, path))
        if changed and self._task.diff:
            result["diff"] = {
                "before_header": source if old_text is not None else "%s (absent)" % path,
                "after_header": path,
                "before": old_text or "",
                "after": new_text,
            }
        return result

    def _check_role_vars(self, result: Dict[str, Any], task_vars: Dict[str, Any]) -> Dict[str, Any]:
        """Validate the plan role's variables of every host of the play against its argument spec, in one pass.

        What Ansible's validation task of the role's entry point main does on each host, without a task per host:
        this host's values as the task sees them (play and role variables, extra vars included), and every other
        host's as ``other_host_values`` tells them (its own inventory's; this host's own ones not carried over).
        """
        options = PLAN_ROLE_OPTIONS
        validator = ArgumentSpecValidator(options)
        base = self._templar.template({name: task_vars[name] for name in options if name in task_vars})
        me = task_vars.get("inventory_hostname")
        hosts = list(task_vars.get("ansible_play_hosts_all") or [me])
        hostvars = task_vars.get("hostvars", {})
        problems: List[str] = []
        seen: List[Dict[str, Any]] = []
        # the cluster-wide variables' own arithmetic (host bits, prefixes, overlaps), once per distinct value,
        # every host that has it named: before any node is asked anything (the probe passes them to the nodes)
        config_hosts: Dict[str, List[str]] = {}
        checked: List[Any] = []
        mine = {name: hostvars[me][name] for name in options if name in hostvars[me]} if me in hostvars else {}
        defaults = {name: spec["default"] for name, spec in options.items() if "default" in spec}
        for host in hosts:
            args = base
            if host != me:
                hv = hostvars[host]
                own = {name: hv[name] for name in options if name in hv}
                if own or mine:
                    args = other_host_values(base, mine, own, defaults)
            config = self._config_of(args)
            known = [errors for value, errors in checked[-8:] if value == config]
            if known:
                config_errors = known[0]
            else:
                config_errors = self._config_errors(config)
                checked.append((config, config_errors))
            for error in config_errors:
                config_hosts.setdefault(error, []).append(str(host))
            if any(args == other for other in seen[-8:]):
                continue  # the same values as a host just validated
            errors = validator.validate(args, validate_role_argument_spec=True).error_messages
            if errors:
                problems.append("%s: %s" % (host, "; ".join(str(e) for e in errors)))
            elif not config_errors:
                seen.append(args)
        for error, named in config_hosts.items():
            problems.append("%s %s: %s" % ("host" if len(named) == 1 else "hosts", planner_hosts(named), error))
        if problems:
            listed = capped(problems, MAX_HOSTS_LISTED, "... and %d more hosts")
            result.update(failed=True, argument_errors=problems,
                          msg="podnet.cluster.plan: the role variables (meta/argument_specs.yml of the role "
                              "podnet.cluster.plan) are not valid (%d problem(s)); no node was asked anything "
                              "and nothing was changed:\n- %s" % (len(problems), "\n- ".join(listed)))
            return result
        result.update(changed=False, checked=len(hosts), msg="The role variables of %d host(s) are valid" % len(hosts))
        return result

    @staticmethod
    def _config_of(args: Mapping[str, Any]) -> Any:
        """The cluster-wide variables of one host's role options, as compared between hosts."""
        return tuple(plain(args.get(name)) for name in ("podnet_cluster_cidrs", "podnet_node_prefix_ipv4",
                                                        "podnet_node_prefix_ipv6", "podnet_service_cidrs",
                                                        "podnet_reserved_cidrs"))

    @staticmethod
    def _config_errors(config: Any) -> List[str]:
        cluster, prefix4, prefix6, service, reserved = config
        try:
            return config_errors(planner.PlanConfig(
                cluster_cidrs=cluster, node_prefix_ipv4=prefix4, node_prefix_ipv6=prefix6, service_cidrs=service or [],
                reserved_cidrs=reserved or []))
        except planner.PlanError as exc:
            return list(exc.errors)

    def _to_gather(self, hosts: List[str], task_vars: Dict[str, Any]) -> List[str]:
        """The nodes of the play to gather network facts from: gathering on (podnet_plan_gather_facts), no
        podnet_node_ip, and no default_ipv4 or default_ipv6 in their facts (gathered already, maybe empty).

        Decided here, once, so that the role runs one task on every host (the include of the questions) instead of
        one per question. Each host's own variables (its hostvars, as the plan reads them) count; for
        podnet_plan_gather_facts, this task's value (role default, play or extra vars) when the host sets none.
        """
        play = set(task_vars.get("ansible_play_hosts_all") or [task_vars.get("inventory_hostname")])
        hostvars = task_vars.get("hostvars", {})
        default = self._templar.template(task_vars.get("podnet_plan_gather_facts", True))
        found = []
        for host in hosts:
            if host not in play:
                continue
            hv = hostvars[host]
            flag = plain(hv["podnet_plan_gather_facts"]) if "podnet_plan_gather_facts" in hv else plain(default)
            try:
                gather = boolean(flag, strict=True)
            except TypeError as exc:
                raise AnsibleActionFail("podnet.cluster.plan: %s: podnet_plan_gather_facts: %s"
                                        % (host, to_native(exc)))
            if not gather or plain(hv.get("podnet_node_ip")):
                continue
            facts = plain(hv.get("ansible_facts") or {})
            if not (isinstance(facts, Mapping) and ("default_ipv4" in facts or "default_ipv6" in facts)):
                found.append(host)
        return found

    @staticmethod
    def _probed(task_vars: Dict[str, Any], probed_var: str) -> Optional[set]:
        """The hosts asked what they hold in this run (probed_var's C(unrecorded)); None: every host's held_var counts.

        A host not asked in this run may still carry held_var from an earlier play of the same run: it is ignored.
        """
        if not probed_var:
            return None
        found = task_vars.get(probed_var)
        if not isinstance(found, Mapping) or found.get("skipped"):
            return set()
        asked = found.get("probe") if "probe" in found else found.get("unrecorded")
        return {str(h) for h in (plain(asked) or [])}

    @staticmethod
    def _node_part(result: Dict[str, Any], task_vars: Dict[str, Any], plan_var: str,
                   node: Optional[str] = None) -> Dict[str, Any]:
        """The fact podnet_node of ``node`` (default: the task's host): its entry of the registered plan, read directly.

        A template such as ``{{ podnet_plan.nodes[inventory_hostname] }}`` wraps the whole table of N nodes for
        every host (a copy of N entries per host: O(N^2) for the play, and pages copied in every worker).
        """
        host = node or task_vars.get("inventory_hostname")
        plan = task_vars.get(plan_var)
        if not isinstance(plan, Mapping) or not isinstance(plan.get("nodes"), Mapping):
            raise AnsibleActionFail("podnet.cluster.plan: %s is not a plan (register the plan task as %s first)"
                                    % (plan_var, plan_var))
        entry = plan["nodes"].get(host)
        if entry is None:
            result.update(skipped=True, changed=False, skip_reason="%s is not a node of the plan" % host)
            return result
        result.update(changed=False, ansible_facts={"podnet_node": plain(entry)})
        return result
