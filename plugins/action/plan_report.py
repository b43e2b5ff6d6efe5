# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Action for podnet.cluster.plan_report: runs on the controller (see the module doc)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Dict

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write
from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils import plan_report

display = Display()

ARGUMENT_SPEC: Dict[str, Any] = {
    "plan_var": {"type": "str", "default": "podnet_plan"},
    "fabric": {"type": "str", "default": "l2_routes"},
    "routers": {"type": "list", "elements": "str", "default": []},
    "export": {"type": "path"},
    "show": {"type": "bool", "default": True},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        _valid, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        plan = task_vars.get(args["plan_var"])
        if not isinstance(plan, Mapping) or not isinstance(plan.get("nodes"), Mapping):
            raise AnsibleActionFail("podnet.cluster.plan_report: %s is not a plan (register the plan task as %s first)"
                                    % (args["plan_var"], args["plan_var"]))
        plan = plain(plan)
        routers = [str(r) for r in args["routers"] or []]
        text = plan_report.table(plan, args["fabric"], routers, args["export"] or None)
        changed = False
        if args["export"]:
            document = json.dumps(plan_report.export(plan, args["fabric"], routers), indent=1, sort_keys=True) + "\n"
            try:
                with open(args["export"], "r", encoding="utf-8") as handle:
                    changed = handle.read() != document
            except OSError:
                changed = True
            if changed:
                try:
                    atomic_write(args["export"], document, mode=0o644, create_dirs=True)
                except OSError as exc:
                    raise AnsibleActionFail("podnet.cluster.plan_report: cannot write podnet_plan_export %s: %s"
                                            % (args["export"], to_native(exc)))
            result["export"] = args["export"]
        if args["show"]:
            # printed as it is, whatever the stdout callback: a table, not a list of strings
            display.display(text)
        result.update(changed=changed, table=text.splitlines())
        return result
