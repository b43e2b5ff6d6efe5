# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Profile a plan playbook run on a generated inventory: where does the controller spend its time?

    .venv/bin/python bench/profile_plan.py [HOSTS [PLAYBOOK [ARGS...]]]     (defaults: 500 podnet.cluster.plan)

Runs ansible-playbook (through bench/run_ansible.py) with cProfile in the main process and in every forked
worker, on the benchmark's inventory (bench/benchlib.py: node IPs given, no connection). Prints the wall time,
the main process's top functions by own time and by cumulative time, and the workers' summed profile. The
raw profiles stay in /var/tmp/podnet-bench-profile-<pid>/ (open them with python -m pstats).
"""

from __future__ import annotations

import glob
import io
import os
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchlib as lib  # noqa: E402
from bench import Runner, Config, write_json  # noqa: E402


def top(stats: pstats.Stats, key: str, count: int) -> str:
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats(key).print_stats(count)
    text = out.getvalue()
    return text[text.find("   ncalls"):].rstrip()


def main() -> int:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    playbook = sys.argv[2:] or ["podnet.cluster.plan"]
    work = Path("/var/tmp/podnet-bench-profile-%d" % os.getpid())
    inventory = write_json(work / "hosts.json", lib.generate_inventory(size, "podnet-bench-%d-absent" % os.getpid()))
    runner = Runner(Config.from_env(), work)
    prof_dir = work / "prof"
    start = time.perf_counter()
    run = runner.playbook("profile-%d" % size, ["-i", str(inventory)] + playbook,
                          env={"PODNET_BENCH_PROFILE_DIR": str(prof_dir)})
    wall = time.perf_counter() - start
    if run.rc != 0:
        print(run.tail())
        return 1
    main_stats = pstats.Stats(str(prof_dir / "main.prof"))
    workers = sorted(glob.glob(str(prof_dir / "worker-*.prof")))
    worker_stats = pstats.Stats(workers[0])
    for path in workers[1:]:
        worker_stats.add(path)
    print("%s on %s hosts: %.1f s wall (profiled; unprofiled runs are faster), peak memory %s"
          % (" ".join(playbook), lib.count_text(size), wall, lib.bytes_text(run.peak)))
    print("main process: %.1f s of profiled CPU time; %d worker forks: %.1f s in all"
          % (main_stats.total_tt, len(workers), worker_stats.total_tt))
    if run.counts:
        print("tasks (wall s): " + "; ".join("%s %.1f" % (t["name"][:50], t["seconds"]) for t in run.counts["tasks"]))
    print("\n== main process, by own time\n" + top(main_stats, "tottime", 25))
    print("\n== main process, by cumulative time\n" + top(main_stats, "cumulative", 40))
    print("\n== workers (summed), by own time\n" + top(worker_stats, "tottime", 15))
    print("\n== workers (summed), by cumulative time\n" + top(worker_stats, "cumulative", 25))
    print("\nprofiles: %s" % prof_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
