# SPDX-License-Identifier: Apache-2.0
"""Test-only stdout callback: the whole run as one JSON document (plays, tasks, per-host results, stats).

ansible.posix.json does the same; ansible-core has no such callback and Galaxy is not reachable.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: podnet_json
type: stdout
short_description: The run as one JSON document (tests only)
description:
  - Prints plays, tasks, per-host results and stats as one JSON document at the end of the run.
"""

import json

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "podnet_json"

    def __init__(self, display=None):
        super().__init__(display)
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def _task_start(self, task):
        self.plays[-1]["tasks"].append({"task": {"name": task.get_name(), "action": task.action}, "hosts": {}})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task)

    def _record(self, result, **extra):
        data = self._convert_host_to_name(result._result) if hasattr(self, "_convert_host_to_name") else result._result
        data = json.loads(json.dumps(data, default=str))
        data.update(extra)
        if self.plays and self.plays[-1]["tasks"]:
            self.plays[-1]["tasks"][-1]["hosts"][result._host.get_name()] = data

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        summary = {h: stats.summarize(h) for h in sorted(stats.processed)}
        self._display.display(json.dumps({"plays": self.plays, "stats": summary}, indent=1, default=str))
