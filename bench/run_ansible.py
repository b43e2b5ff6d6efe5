# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Run ansible-playbook in this very process and record its own peak memory (and, optionally, a profile).

    python bench/run_ansible.py ARGS...        (the arguments of ansible-playbook)

The benchmark starts every playbook through this wrapper, ours and the baseline alike. It is the same
process as ansible-playbook (the CLI's main() is called here), so at exit it writes, to the file named by
PODNET_BENCH_RSS_FILE, ``{"maxrss_kib": ...}``: getrusage(RUSAGE_SELF).ru_maxrss, the exact peak resident
memory of the controller's main process. Ansible's workers are forks that leave with os._exit, so this hook
never runs in them (their peaks reach the parent's wait4() as the children's maximum instead).

With PODNET_BENCH_PROFILE_DIR set, the main process runs under cProfile (``main.prof``) and every worker
fork profiles its own task execution (``worker-<pid>.prof``); bench/profile_plan.py adds them up.
"""

from __future__ import annotations

import atexit
import cProfile
import json
import os
import resource
import sys


def _write_rss(path: str) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"maxrss_kib": peak, "pid": os.getpid()}, handle)


def _profile_workers(directory: str) -> None:
    from ansible.executor.process.worker import WorkerProcess  # pylint: disable=import-outside-toplevel

    original = WorkerProcess._run  # pylint: disable=protected-access

    def profiled_run(self):
        profile = cProfile.Profile()
        profile.enable()
        try:
            return original(self)
        finally:
            profile.disable()
            profile.dump_stats(os.path.join(directory, "worker-%d.prof" % os.getpid()))

    WorkerProcess._run = profiled_run  # pylint: disable=protected-access


def main() -> None:
    main_pid = os.getpid()
    rss_file = os.environ.get("PODNET_BENCH_RSS_FILE")
    profile_dir = os.environ.get("PODNET_BENCH_PROFILE_DIR")
    profile = None
    if profile_dir:
        os.makedirs(profile_dir, exist_ok=True)
        profile = cProfile.Profile()
        profile.enable()
        _profile_workers(profile_dir)

    def at_exit() -> None:
        if os.getpid() != main_pid:  # a fork that somehow exits normally: not the main process
            return
        if profile is not None:
            profile.disable()
            profile.dump_stats(os.path.join(profile_dir, "main.prof"))
        if rss_file:
            _write_rss(rss_file)

    atexit.register(at_exit)
    from ansible.cli.playbook import main as playbook_main  # pylint: disable=import-outside-toplevel

    sys.argv = ["ansible-playbook"] + sys.argv[1:]
    playbook_main()


if __name__ == "__main__":
    main()
