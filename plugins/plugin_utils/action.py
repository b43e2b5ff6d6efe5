# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The common start of the collection's action plugins: validate the task's arguments, then act.

Each action (plan, plan_report, report, node_state) names its ``ARGUMENT_SPEC`` and implements
``act(result, task_vars, args)``; ``run`` is the same for all of them.
"""

from __future__ import annotations

from typing import Any, Dict

from ansible.plugins.action import ActionBase


class PodnetAction(ActionBase):
    """An action whose arguments are checked against ``ARGUMENT_SPEC`` before ``act`` runs."""

    TRANSFERS_FILES = False
    ARGUMENT_SPEC: Dict[str, Any] = {}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _valid, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        return self.act(result, task_vars or {}, args)

    def act(self, result: Dict[str, Any], task_vars: Dict[str, Any], args: Dict[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError
