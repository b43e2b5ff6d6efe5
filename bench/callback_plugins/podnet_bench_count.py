# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Benchmark-only callback: counts each host's task results and times each task (bench/bench.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: podnet_bench_count
type: aggregate
short_description: Count task results per host and time each task (benchmark only)
description:
  - "At the end of the run writes a JSON document to the file named by the environment variable
    E(PODNET_BENCH_COUNT_FILE) with C(results), the number of task results each host got (ok, changed, skipped,
    failed, unreachable; one per task, loop items not counted), and C(tasks), the name and wall-clock seconds of
    every task in the order they started (a task's time runs until the next task, or the end of the play)."
  - The benchmark uses C(results) to give its baseline play as many tasks per host as the measured play ran.
requirements:
  - enabled with ANSIBLE_CALLBACKS_ENABLED=podnet_bench_count and ANSIBLE_CALLBACK_PLUGINS=<repo>/bench/callback_plugins
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "podnet_bench_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display)
        self.results = {}
        self.tasks = []
        self._open = None

    def _close(self):
        if self._open is not None:
            name, start = self._open
            self.tasks.append({"name": name, "seconds": round(time.perf_counter() - start, 4)})
            self._open = None

    def _start(self, name):
        self._close()
        self._open = (name, time.perf_counter())

    def v2_playbook_on_play_start(self, play):
        self._close()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self._start("handler: %s" % task.get_name())

    def _count(self, result):
        host = result._host.get_name()  # pylint: disable=protected-access
        self.results[host] = self.results.get(host, 0) + 1

    def v2_runner_on_ok(self, result, **kwargs):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._count(result)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._count(result)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._count(result)

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("PODNET_BENCH_COUNT_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"results": self.results, "tasks": self.tasks}, handle)
