# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Action for podnet.cluster.plan_report: runs on the controller (see the module doc)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Dict, List

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.utils.display import Display

from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import write_if_changed
from ansible_collections.podnet.cluster.plugins.plugin_utils.action import PodnetAction
from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils import kubernetes, plan_report

display = Display()

ARGUMENT_SPEC: Dict[str, Any] = {
    "plan_var": {"type": "str", "default": "podnet_plan"},
    "fabric": {"type": "str", "default": "l2_routes"},
    "routers": {"type": "list", "elements": "str", "default": []},
    "export": {"type": "path"},
    "show": {"type": "bool", "default": True},
    "kubernetes": {"type": "bool", "default": False},
    "kubernetes_dir": {"type": "path"},
}


class ActionModule(PodnetAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC
    _requires_connection = False

    def act(self, result, task_vars, args):
        plan = task_vars.get(args["plan_var"])
        if not isinstance(plan, Mapping) or not isinstance(plan.get("nodes"), Mapping):
            raise AnsibleActionFail("podnet.cluster.plan_report: %s is not a plan (register the plan task as %s first)"
                                    % (args["plan_var"], args["plan_var"]))
        plan = plain(plan)
        routers = [str(r) for r in args["routers"] or []]
        changed = self._table(plan, args, routers, result)
        if args["kubernetes"] or args["kubernetes_dir"]:
            changed = self._kubernetes(plan, args, result) or changed
        result["changed"] = changed
        return result

    def _table(self, plan: Dict[str, Any], args: Dict[str, Any], routers: List[str], result: Dict[str, Any]) -> bool:
        text = plan_report.table(plan, args["fabric"], routers, args["export"] or None)
        changed = False
        if args["export"]:
            document = json.dumps(plan_report.export(plan, args["fabric"], routers), indent=1, sort_keys=True) + "\n"
            try:
                changed = write_if_changed(args["export"], document)
            except OSError as exc:
                raise AnsibleActionFail("podnet.cluster.plan_report: cannot write podnet_plan_export %s: %s"
                                        % (args["export"], to_native(exc)))
            result["export"] = args["export"]
        if args["show"]:
            # printed as it is, whatever the stdout callback: a table, not a list of strings
            display.display(text)
        result["table"] = text.splitlines()
        return changed

    def _kubernetes(self, plan: Dict[str, Any], args: Dict[str, Any], result: Dict[str, Any]) -> bool:
        """The Kubernetes settings that must agree with the plan: printed, and written to kubernetes_dir (never in
        check mode)."""
        try:
            settings = kubernetes.from_plan(plan, args["fabric"])
        except kubernetes.KubernetesSettingsError as exc:
            raise AnsibleActionFail("podnet.cluster.plan_report: %s" % exc)
        directory = args["kubernetes_dir"]
        changed = False
        paths: List[str] = []
        if directory:
            paths = [os.path.join(directory, name) for name, _text in settings.files()]
            if not self._task.check_mode:
                for path, (_name, text) in zip(paths, settings.files()):
                    try:
                        changed = write_if_changed(path, text) or changed
                    except OSError as exc:
                        raise AnsibleActionFail("podnet.cluster.plan_report: cannot write %s (podnet_report_dir): %s"
                                                % (path, to_native(exc)))
        text = settings.text(written_to=directory or None)
        if directory and self._task.check_mode:
            text = text.replace("  Written to %s:" % directory, "  Check mode: not written to %s:" % directory)
        if args["kubernetes"]:
            display.display(text)
        result["kubernetes"] = {
            "cluster_configuration": settings.cluster_configuration(),
            "kube_proxy_configuration": settings.kube_proxy_configuration(),
            "controller_manager_flags": settings.controller_manager_flags(),
            "notes": list(settings.notes),
            "text": text.splitlines(),
        }
        if paths:
            result["kubernetes_files"] = paths
        return changed
