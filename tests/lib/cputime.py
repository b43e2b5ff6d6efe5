# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""What each test costs in CPU, and which modules the suite's CPU goes to.

``make test`` is bound by the CPU of the machine (the playbook runs, the labs), not by waiting, so the wall time
of a test under xdist says little: it depends on what the other workers run beside it. This plugin (its hooks
are imported by tests/conftest.py) records, for every test, the wall time and the CPU (user + system) of the
worker itself and of every process the worker waited for during the test (``RUSAGE_CHILDREN``: ansible-playbook
and its forks, the modules it ran in the lab's namespaces, ``ip``, molecule), setup and teardown included, so a
module-scoped lab is counted with the module's first or last test. Daemons a test starts and that outlive their
parent (a lab node's sshd, dockerd) are not counted.

Each worker appends a line per test to ``tests/output/cpu/<worker>.tsv`` (or ``$PODNET_CPU_DIR/<worker>.tsv``);
at the end of the session the controller prints the modules that cost the most CPU, and the total, under "CPU by
test module". Read the files again with ``python tests/lib/cputime.py [DIR] [--tests N]``.

The Ansible commands the tests run through ``lib.labtools.run`` are recorded too, one line per command in
``tests/output/cpu/<worker>.runs`` (the test, what ran, its wall time and CPU), so that the end of the session can
say where the suite's CPU goes by what ran (``podnet.cluster.site``, ``podnet.lab.lab``, ...): ``--runs``.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import pytest

# PODNET_CPU_DIR: another directory, for a session that runs beside another one in the same checkout (make
# core-oldest runs beside make test's own pytest session; each clears its record when it starts)
CPU_DIR = Path(os.environ.get("PODNET_CPU_DIR") or Path(__file__).resolve().parents[1] / "output" / "cpu")
SHOWN = 20  # modules listed at the end of a session


# CPU of the commands a fork server ran for this process (lib/forkserver.py): its children are not this process's
_served = [0.0]


def add_served(cpu: float) -> None:
    """Count ``cpu`` seconds of a command that ran as another process's child (lib/forkserver.py) as this
    process's own children's."""
    _served[0] += cpu


def _cpu() -> float:
    total = _served[0]
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _worker(config) -> str:
    return getattr(config, "workerinput", {}).get("workerid", "main")


def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput"):
        return  # the controller (or a run without xdist) clears the record once
    CPU_DIR.mkdir(parents=True, exist_ok=True)
    for old in list(CPU_DIR.glob("*.tsv")) + list(CPU_DIR.glob("*.runs")):
        old.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    wall, cpu = time.monotonic(), _cpu()
    yield
    line = "%s\t%.2f\t%.2f\n" % (item.nodeid, time.monotonic() - wall, _cpu() - cpu)
    CPU_DIR.mkdir(parents=True, exist_ok=True)
    with open(CPU_DIR / ("%s.tsv" % _worker(item.config)), "a", encoding="utf-8") as out:
        out.write(line)


def children_cpu() -> float:
    """CPU (user + system) of the processes this one has waited for, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + _served[0]


def run_kind(argv: List[str]) -> str:
    """What an Ansible command line runs: the program and its playbook (``ansible-playbook podnet.cluster.site``)
    or module (``ansible -m command``)."""
    words = [os.path.basename(argv[0])] if argv else ["?"]
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            words.append("-m " + next(args, "?"))
            break
        if arg in ("-i", "--inventory", "-e", "--extra-vars", "-l", "--limit"):
            next(args, None)  # the option's value
        elif arg.startswith("podnet.") or arg.endswith((".yml", ".yaml")):
            words.append(os.path.basename(arg))
            break
    return " ".join(words)


def record_run(argv: List[str], wall: float, cpu: float) -> None:
    """One line in this worker's record of commands: the test running it, what ran, wall and CPU seconds. Outside a
    test (bench/compare_state.py runs playbooks through lib.labtools too) nothing is recorded."""
    test = os.environ.get("PYTEST_CURRENT_TEST")
    if not test:
        return
    test = test.rsplit(" ", 1)[0]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    CPU_DIR.mkdir(parents=True, exist_ok=True)
    with open(CPU_DIR / ("%s.runs" % worker), "a", encoding="utf-8") as out:
        out.write("%s\t%s\t%.2f\t%.2f\n" % (test, run_kind(argv), wall, cpu))


def read_runs(directory: Path = CPU_DIR) -> List[Tuple[str, str, float, float]]:
    """(node id, what ran, wall seconds, CPU seconds) of every recorded command."""
    rows = []
    for path in sorted(Path(directory).glob("*.runs")):
        for line in path.read_text(encoding="utf-8").splitlines():
            nodeid, kind, wall, cpu = line.rsplit("\t", 3)
            rows.append((nodeid, kind, float(wall), float(cpu)))
    return rows


def runs_report(runs, whole: float) -> List[str]:
    """The commands by what ran, the most CPU first: how many, their CPU, its share of ``whole``, CPU per run."""
    sums: Dict[str, List[float]] = {}
    for _nodeid, kind, _wall, cpu in runs:
        entry = sums.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += cpu
    lines = ["%8s %6s %6s %7s  %s" % ("CPU s", "share", "runs", "CPU/run", "what ran (lib.labtools.run)")]
    for kind, (count, cpu) in sorted(sums.items(), key=lambda item: (-item[1][1], item[0])):
        lines.append("%8.0f %5.1f%% %6d %7.2f  %s" % (cpu, 100.0 * cpu / whole if whole else 0.0, count,
                                                      cpu / count, kind))
    return lines


def read(directory: Path = CPU_DIR) -> List[Tuple[str, float, float]]:
    """(node id, wall seconds, CPU seconds) of every recorded test."""
    rows = []
    for path in sorted(Path(directory).glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            nodeid, wall, cpu = line.rsplit("\t", 2)
            rows.append((nodeid, float(wall), float(cpu)))
    return rows


def by_module(rows: Iterable[Tuple[str, float, float]]) -> List[Tuple[str, int, float, float]]:
    """(module path, tests, wall, CPU) per test module, the most CPU first."""
    sums: Dict[str, List[float]] = {}
    for nodeid, wall, cpu in rows:
        entry = sums.setdefault(nodeid.split("::", 1)[0], [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += wall
        entry[2] += cpu
    return sorted(((m, int(n), w, c) for m, (n, w, c) in sums.items()), key=lambda row: (-row[3], row[0]))


def report(rows, shown: int = SHOWN) -> List[str]:
    modules = by_module(rows)
    total = sum(row[3] for row in modules)

    def line(cpu: float, wall: float, tests: int, label: str) -> str:
        return "%8.0f %5.1f%% %8.0f %5d  %s" % (cpu, 100.0 * cpu / total if total else 0.0, wall, tests, label)

    lines = ["%8s %6s %8s %5s  %s" % ("CPU s", "share", "wall s", "tests", "module")]
    lines += [line(cpu, wall, tests, module) for module, tests, wall, cpu in modules[:shown]]
    rest = modules[shown:]
    if rest:
        lines.append(line(sum(r[3] for r in rest), sum(r[2] for r in rest), sum(r[1] for r in rest),
                          "(%d more modules)" % len(rest)))
    tests = sum(r[1] for r in modules)
    lines.append("%8.0f %6s %8s %5d  in all (%.1f CPU-minutes)" % (total, "", "", tests, total / 60))
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    rows = read()
    if not rows:
        return
    terminalreporter.write_sep("=", "CPU by test module (tests/output/cpu; the worker and the processes it waited for)")
    for line in report(rows):
        terminalreporter.write_line(line)
    runs = read_runs()
    if runs:
        terminalreporter.write_sep("-", "the Ansible commands of the tests by what ran (cputime.py --runs)")
        for line in runs_report(runs, sum(row[2] for row in rows))[:12]:
            terminalreporter.write_line(line)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="CPU by test module, from the per-test record of a pytest run")
    parser.add_argument("directory", nargs="?", default=str(CPU_DIR), help="the record (default: %(default)s)")
    parser.add_argument("--tests", type=int, default=0, metavar="N", help="also the N tests that cost the most")
    parser.add_argument("--runs", action="store_true", help="also the Ansible commands the tests ran, by what ran")
    args = parser.parse_args(argv)
    rows = read(Path(args.directory))
    for text in report(rows, shown=len(rows)):
        print(text)
    if args.runs:
        for text in runs_report(read_runs(Path(args.directory)), sum(row[2] for row in rows)):
            print(text)
    for nodeid, wall, cpu in sorted(rows, key=lambda row: -row[2])[:args.tests]:
        print("%8.1f %8.1f  %s" % (cpu, wall, nodeid))


if __name__ == "__main__":
    main()
