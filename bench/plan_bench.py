# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the planner: a dual-stack plan for 50, 500 and 5,000 nodes, state file read and written.

Each size runs twice: a first plan from an empty state (every node allocated), then a re-plan from the
recorded state with 1% of the nodes replaced (the common case of a later run). Time is wall-clock, best of
three; memory is tracemalloc's peak for one re-plan. Target: under one second for 5,000 nodes.

    make bench      (or .venv/bin/python bench/plan_bench.py)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".collections"))

from ansible_collections.podnet.cluster.plugins.plugin_utils import plan as planner  # noqa: E402
from ansible_collections.podnet.cluster.plugins.plugin_utils import state as statefile  # noqa: E402

CONFIG = planner.PlanConfig(cluster_cidrs=["10.0.0.0/8", "fd00:10::/48"], node_prefix_ipv4=24,
                            node_prefix_ipv6=64, service_cidrs=["172.20.0.0/16"])


def nodes(count: int, generation: int = 0):
    out = []
    for i in range(count):
        name = "node-%05d" % i if i % 100 or not generation else "node-%05d-g%d" % (i, generation)
        out.append(planner.NodeInput(name=name, node_ip=["192.168.%d.%d/16" % (i // 250, i % 250 + 1),
                                                         "fd31::%x/64" % (i + 1)]))
    return out


def one_cycle(path: str, inventory) -> None:
    with statefile.locked(path):
        old, _unused = statefile.read(path)
        result = planner.make_plan(CONFIG, inventory, old)
        if result.state != old:
            statefile.write_atomic(path, statefile.render(result.state))


def best(fn, repeat: int = 3) -> float:
    times = []
    for _unused in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    print("%8s  %14s  %14s  %12s" % ("nodes", "first plan s", "re-plan s", "peak MiB"))
    worst = 0.0
    for count in (50, 500, 5000):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "state.yml")
            first_inv, later_inv = nodes(count), nodes(count, 1)

            def first():
                if os.path.exists(path):
                    os.unlink(path)
                one_cycle(path, first_inv)

            t_first = best(first)

            def again():
                first()
                start = time.perf_counter()
                one_cycle(path, later_inv)
                return time.perf_counter() - start

            t_again = min(again() for _unused in range(3))
            first()
            tracemalloc.start()
            one_cycle(path, later_inv)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        worst = max(worst, t_first, t_again)
        print("%8d  %14.3f  %14.3f  %12.1f" % (count, t_first, t_again, peak))
    print("target: 5,000 nodes under 1.0 s -> %s" % ("met" if worst < 1.0 else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
