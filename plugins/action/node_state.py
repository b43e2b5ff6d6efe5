# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Action for podnet.cluster.node_state: builds the node document on the controller, runs the module once.

The plan is read straight from the registered variable (``plan_var``, default ``podnet_plan``) instead of
being templated into the task's arguments, so a cluster of thousands of nodes costs each host only its own
document (see docs/performance.md).
"""

from __future__ import annotations

import re
from typing import Any, Dict

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import DEFAULTS, build_document
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError

ARGUMENT_SPEC: Dict[str, Any] = {
    "state": {"type": "str", "choices": ["present", "absent", "probe", "restore", "restart"], "default": "present"},
    "service": {"type": "str", "default": "docker"},
    "timeout": {"type": "int", "default": 120},
    "settings": {"type": "dict", "default": {}},
    "plan_var": {"type": "str", "default": "podnet_plan"},
    "document": {"type": "dict"},
    "cluster_cidrs": {"type": "list", "elements": "str", "default": []},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        _valid, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = self._task.delegate_to or task_vars.get("inventory_hostname")
        document = args.get("document")
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
                result.update(failed=True, msg="podnet.cluster.node_state: %s" % "; ".join(errors), errors=errors)
                return result
        # A confirmation for this run, not desired state: never part of the document (nor of the node's record).
        allow = bool(plain(args["settings"]).get("allow_readdress", False))
        module_args = {"document": document, "state": args["state"], "service": args["service"],
                       "timeout": args["timeout"], "allow_readdress": allow}
        result.update(self._execute_module(module_name="podnet.cluster.node_state", module_args=module_args,
                                           task_vars=task_vars))
        return result
