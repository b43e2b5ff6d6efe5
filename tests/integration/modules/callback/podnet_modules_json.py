"""Test-only stdout callback for tests/integration/modules: one JSON list of task results.

Each entry: {"name": task name, "action": module, "result": the host's result dict}.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: podnet_modules_json
type: stdout
short_description: Task results as one JSON list (module tests only)
description:
  - Prints the result of every task of a single-host play as one JSON list at the end of the run.
"""

import json

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "podnet_modules_json"

    def __init__(self, display=None):
        super().__init__(display)
        self.results = []
        self.current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.current = {"name": task.get_name(), "action": task.action}

    def _record(self, result, **extra):
        data = json.loads(json.dumps(result._result, default=str))
        data.update(extra)
        entry = dict(self.current or {})
        entry["result"] = data
        self.results.append(entry)

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        self._display.display("PODNET-RESULTS " + json.dumps(self.results, default=str))
