# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Action for podnet.cluster.report: renders the HTML report on the controller and writes it (see the module doc)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import write_if_changed
from ansible_collections.podnet.cluster.plugins.plugin_utils.action import PodnetAction
from ansible_collections.podnet.cluster.plugins.plugin_utils import report as reportlib
from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain

ARGUMENT_SPEC: Dict[str, Any] = {
    "dir": {"type": "path", "required": True},
    "kind": {"type": "str", "choices": ["plan", "verify"], "default": "plan"},
    "filename": {"type": "str"},
    "title": {"type": "str"},
    "plan": {"type": "dict"},
    "verify": {"type": "dict"},
    "fabric": {"type": "str"},
    "routers": {"type": "list", "elements": "str"},
    "bridge": {"type": "str"},
    "gce_project": {"type": "str"},
    "gce_network": {"type": "str"},
    "vxlan_vni": {"type": "int"},
    "vxlan_port": {"type": "int"},
}


class ActionModule(PodnetAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC
    _requires_connection = False

    def act(self, result, task_vars, args):
        kind = args["kind"]
        plan = plain(args["plan"] if args["plan"] is not None else self._var(task_vars, "podnet_plan"))
        if not isinstance(plan, dict) or not isinstance(plan.get("nodes"), dict):
            raise AnsibleActionFail("podnet.cluster.report: podnet_plan is not known (run the plan first, or pass plan)")
        verify = None
        if kind == "verify":
            verify = plain(args["verify"] if args["verify"] is not None
                           else self._var(task_vars, "podnet_verify_result"))
            if not isinstance(verify, dict) or "checks" not in verify:
                raise AnsibleActionFail("podnet.cluster.report: kind verify needs the judged result "
                                        "(podnet_verify_result, or pass verify)")
        try:
            fabric = self._fabric(args, task_vars)
            title = args["title"] or ("podnet.cluster %s: %d node%s" % (
                "verify" if kind == "verify" else "plan", len(plan["nodes"]), "" if len(plan["nodes"]) == 1 else "s"))
            text = reportlib.render(plan, fabric, verify, title=title)
        except reportlib.ReportError as exc:
            raise AnsibleActionFail("podnet.cluster.report: %s" % exc)
        path = os.path.join(args["dir"], args["filename"] or "%s.html" % kind)
        failed_cells = sum(1 for c in reportlib.matrix_cells(verify) if c["state"] == "failed") if verify else 0
        result.update(path=path, nodes=len(plan["nodes"]), fabric=fabric.kind, failed_cells=failed_cells)
        if self._task.check_mode:
            result.update(changed=False, skipped=True, skip_reason="check mode: the report %s is not written" % path)
            return result
        try:
            changed = write_if_changed(path, text)
        except OSError as exc:
            raise AnsibleActionFail("podnet.cluster.report: cannot write %s (podnet_report_dir): %s"
                                    % (path, to_native(exc)))
        result.update(changed=changed, msg="report written to %s" % path if changed else "report %s unchanged" % path)
        return result

    def _var(self, task_vars: Dict[str, Any], name: str, default: Any = None) -> Any:
        if name not in task_vars:
            return default
        return self._templar.template(task_vars[name])

    def _fabric(self, args: Dict[str, Any], task_vars: Dict[str, Any]) -> reportlib.Fabric:
        """The fabric as the task's arguments say, else as this host's variables say."""
        def pick(key: str, var: str, default: Any) -> Any:
            return args[key] if args.get(key) is not None else self._var(task_vars, var, default)

        kind = str(pick("fabric", "podnet_fabric", "l2_routes") or "l2_routes")
        routers: List[reportlib.Router] = []
        if kind == "router":
            names = args["routers"]
            if names is None:
                group = str(self._var(task_vars, "podnet_router_group", "podnet_routers") or "podnet_routers")
                names = list((task_vars.get("groups") or {}).get(group) or [])
            hostvars = task_vars.get("hostvars") or {}
            for name in names:
                routers.append(reportlib.Router(str(name), self._router_addresses(hostvars, str(name))))
        vni = pick("vxlan_vni", "podnet_vxlan_vni", None)
        port = pick("vxlan_port", "podnet_vxlan_port", None)
        return reportlib.Fabric(
            kind=kind, routers=routers, bridge=str(pick("bridge", "podnet_bridge", "cbr0") or "cbr0"),
            gce_project=str(pick("gce_project", "podnet_gce_project", "") or ""),
            gce_network=str(pick("gce_network", "podnet_gce_network", "") or ""),
            vxlan_vni=int(vni) if vni not in (None, "") else None,
            vxlan_port=int(port) if port not in (None, "") else None)

    def _router_addresses(self, hostvars: Any, name: str) -> List[str]:
        try:
            hv = hostvars[name]
        except KeyError:
            return []
        for var in ("podnet_node_ip", "ansible_host"):
            if var in hv:
                value = plain(self._templar.template(hv[var]))
                values: Optional[List[Any]] = value if isinstance(value, list) else [value]
                return [str(v) for v in values or [] if v]
        return []
