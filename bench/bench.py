# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The scale benchmark: each item's time against a trivial baseline, one table.

    make bench                                  (or: .venv/bin/python bench/bench.py; needs root)
    BENCH_SIZES=500,2000 BENCH_LABS=20 make bench

Items (each measured side by side with its baseline, in this one run; see docs/performance.md):
  plan       ansible-playbook podnet.cluster.plan on generated inventories (BENCH_SIZES hosts, node IPs given,
             no connection) vs a play of trivial set_fact tasks, as many per host as the plan play ran per
             host (counted by a callback in a calibration run, checked in every timed run); target <= 1.5x
             at every size, growth linear. Also the peak memory of the 5,000-host plan run (< 1 GiB).
  site-plan  the plan part of podnet.cluster.site (BENCH_SITE_PLAN, default bench/site_plan.yml), the same way
  converge   a no-op podnet.cluster.site on a lab of BENCH_LABS nodes (built with the lab playbook) vs a
             play of 3 ansible.builtin.ping tasks on the same lab; target <= 1.5x
  verify     podnet.cluster.verify on the same kind of lab (BENCH_VERIFY_LABS nodes), the full matrix
             (podnet_verify_peers all) and a sample (BENCH_VERIFY_PEERS peers per node), vs a no-op
             podnet.cluster.site on that lab; time, peak memory and probe count; target: the sample <= 2x
  routes     the route reconcile (bench/routes_invocation.py) of BENCH_ROUTES peer routes in a scratch
             namespace, nothing to change (target <= +0.3 s) and all to add (<= +0.5 s), vs one ping task
  overlay    the overlay reconcile (bench/overlay_invocation.py, fabric vxlan) of BENCH_ROUTES peers (three kernel
             entries each) in a scratch namespace, nothing to change (<= +0.3 s) and all to add (<= +1.5 s), vs
             one ping task; the kernel's own share of the same entries is measured and noted

Environment (defaults in brackets):
  BENCH_ITEMS       items to run [plan,site-plan,converge,verify,routes,overlay]
  BENCH_SIZES       inventory sizes for plan and site-plan [500,2000,5000]
  BENCH_LABS        lab sizes for converge [20,50]
  BENCH_VERIFY_LABS lab sizes for verify [20,50]
  BENCH_VERIFY_PEERS peers per node of the sampled verify run [10]
  BENCH_ROUTES      peer routes [5000]
  BENCH_REPEAT      runs of a cheap measurement, the median is reported [3]; the routes item uses
  BENCH_ROUTES_REPEAT [5]
  BENCH_CHEAP       a run shorter than this many seconds is repeated [10]
  BENCH_CAP         a measured run is stopped at BENCH_CAP x its baseline's time (at least BENCH_CAP_MIN
                    seconds) [2.0]; a stopped run proves the ratio is above BENCH_CAP, so the target is
                    missed; larger sizes of that item are then not run [BENCH_CAP_MIN=60]
  BENCH_TIMEOUT     no run takes longer than this many seconds [1800]
  BENCH_MEM_LIMIT   a run whose processes together use more than this many MiB is stopped [8192]
  BENCH_SITE_PLAN   playbook and arguments of the site-plan item [bench/site_plan.yml -e podnet_plan_adopt=false]
  BENCH_KEEP=1      keep the work directory (/var/tmp/podnet-bench-<pid>: inventories, logs)
  BENCH_OUT         also write the report (table and notes) to this file
  BENCH_STRICT=1    exit 1 when a target is missed or unknown (otherwise only when a run failed)

Everything it creates is named podnet-bench-<pid>-* (namespaces, lab, /var/tmp/podnet-bench-<pid>) and
removed at the end, also after a failure; leftovers of killed runs are removed at the start. The machine's
own network namespace is not touched: labs and the routes node live in namespaces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import benchlib as lib  # noqa: E402
import overlay_invocation  # noqa: E402
import routes_invocation  # noqa: E402

PREFIX = "podnet-bench-"
OWNER = "%s%d" % (PREFIX, os.getpid())
LAB_ROOT_BASE = Path("/var/tmp/podnet-lab")
WORK_BASE = Path("/var/tmp")
STALE = re.compile(r"^%s(\d+)(-.*)?$" % re.escape(PREFIX))
KEPT = "KEPT"  # in a work directory kept with BENCH_KEEP=1: not a leftover
MARKER = b"bench.py"  # in the command line of a live benchmark process
PLAN_RATIO = 1.5
GROWTH_LIMIT = 1.5
CONVERGE_RATIO = 1.5
VERIFY_RATIO = 2.0
ROUTES_NO_CHANGE = 0.3
ROUTES_ADD = 0.5
OVERLAY_NO_CHANGE = 0.3
OVERLAY_ADD = 1.5
MEMORY_LIMIT = lib.GIB
MEMORY_SIZE = 5000


def log(msg: str) -> None:
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class BenchFailure(Exception):
    """A run failed or did not do what it must (not a missed target)."""


# --- Configuration -----------------------------------------------------------------------------------------

def _ints(name: str, default: str) -> List[int]:
    text = os.environ.get(name, default)
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit("%s=%r: give comma-separated whole numbers, e.g. %s" % (name, text, default))
    if any(v < 1 for v in values):
        raise SystemExit("%s=%r: every number must be at least 1" % (name, text))
    return sorted(set(values))


def _float(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        return float(text) if text else default
    except ValueError:
        raise SystemExit("%s=%r: give a number" % (name, text))


@dataclass
class Config:
    items: List[str]
    sizes: List[int]
    labs: List[int]
    verify_labs: List[int]
    verify_peers: int
    routes: int
    repeat: int
    routes_repeat: int
    cheap: float
    cap_ratio: float
    cap_min: float
    timeout: float
    mem_limit: int
    site_plan: List[str]
    keep: bool
    out: Optional[str]
    strict: bool

    @classmethod
    def from_env(cls) -> "Config":
        known = ["plan", "site-plan", "converge", "verify", "routes", "overlay"]
        items = [i.strip() for i in os.environ.get("BENCH_ITEMS", ",".join(known)).split(",") if i.strip()]
        unknown = [i for i in items if i not in known]
        if unknown:
            raise SystemExit("BENCH_ITEMS: unknown %s (known: %s)" % (", ".join(unknown), ", ".join(known)))
        # Without a state file, site's plan asks every node what it holds (adoption): a module round trip per
        # node, which the generated inventories cannot answer (they have no connection). The default measures
        # the plan part as it runs once the state file records every node: no node asked.
        site_plan = shlex.split(os.environ.get("BENCH_SITE_PLAN", "bench/site_plan.yml -e podnet_plan_adopt=false"))
        if not site_plan:
            raise SystemExit("BENCH_SITE_PLAN is empty: give a playbook (and arguments)")
        return cls(
            items=items,
            sizes=_ints("BENCH_SIZES", "500,2000,5000"),
            labs=_ints("BENCH_LABS", "20,50"),
            verify_labs=_ints("BENCH_VERIFY_LABS", "20,50"),
            verify_peers=_ints("BENCH_VERIFY_PEERS", "10")[0],
            routes=_ints("BENCH_ROUTES", "5000")[-1],
            repeat=max(1, int(_float("BENCH_REPEAT", 3))),
            routes_repeat=max(1, int(_float("BENCH_ROUTES_REPEAT", 5))),
            cheap=_float("BENCH_CHEAP", 10.0),
            cap_ratio=_float("BENCH_CAP", 2.0),
            cap_min=_float("BENCH_CAP_MIN", 60.0),
            timeout=_float("BENCH_TIMEOUT", 1800.0),
            mem_limit=int(_float("BENCH_MEM_LIMIT", 8192) * lib.MIB),
            site_plan=site_plan,
            keep=os.environ.get("BENCH_KEEP", "") not in ("", "0"),
            out=os.environ.get("BENCH_OUT") or None,
            strict=os.environ.get("BENCH_STRICT", "") not in ("", "0"),
        )


# --- Running a playbook ----------------------------------------------------------------------------------

@dataclass
class Run:
    """One ansible-playbook process: wall time, exit, why it was stopped, memory, the callback's counts."""

    name: str
    seconds: float
    rc: int
    stopped: str  # "", "time" or "memory"
    log: Path
    main_maxrss: Optional[int] = None  # bytes, exact, of the main process (from inside it)
    any_maxrss: int = 0  # bytes, the largest single process of the run (wait4: main or any fork)
    tree_pss: int = 0  # bytes, peak of the sum of PSS over all its processes, sampled every 0.5 s
    counts: Optional[Dict[str, object]] = None

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 1500) -> str:
        return self.output[-chars:]

    @property
    def peak(self) -> int:
        return max(self.main_maxrss or 0, self.tree_pss)


def _children_of(root: int) -> List[int]:
    """Every live descendant of ``root`` (by parent pid, read from /proc)."""
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found.extend(kids)
        frontier.extend(kids)
    return found


def _pss(pid: int) -> int:
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Runner:
    """Starts playbooks (through bench/run_ansible.py), times them, samples memory, stops them at a cap."""

    def __init__(self, config: Config, work: Path):
        self.config = config
        self.work = work
        self.current: Optional[subprocess.Popen] = None
        self.serial = 0
        self.loads: List[float] = []  # 1-minute load average at the start of each run

    def env(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH="%s:%s" % (Path(sys.executable).parent, env.get("PATH", "")),
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_LOCALHOST_WARNING="False",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
            ANSIBLE_DEPRECATION_WARNINGS="False",
            ANSIBLE_RETRY_FILES_ENABLED="False",
            ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
            ANSIBLE_CALLBACKS_ENABLED="podnet_bench_count",
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(extra or {})
        return env

    def playbook(self, name: str, args: Sequence[str], cap: Optional[float] = None, netns: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> Run:
        """Run ``ansible-playbook ARGS`` from the repository root; stop it after ``cap`` seconds."""
        self.serial += 1
        self.loads.append(os.getloadavg()[0])
        stem = self.work / "logs" / ("%03d-%s" % (self.serial, re.sub(r"[^A-Za-z0-9.-]+", "-", name)))
        stem.parent.mkdir(parents=True, exist_ok=True)
        rss_file, count_file, log_file = (Path("%s.%s" % (stem, s)) for s in ("rss.json", "count.json", "log"))
        argv = [sys.executable, str(HERE / "run_ansible.py")] + list(args)
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        cap = min(cap or self.config.timeout, self.config.timeout)
        run_env = self.env(dict(env or {}, PODNET_BENCH_RSS_FILE=str(rss_file),
                                PODNET_BENCH_COUNT_FILE=str(count_file)))
        with open(log_file, "wb") as out:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=str(REPO), env=run_env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
            self.current = proc
            sampler = _Sampler(proc.pid, start, cap, self.config.mem_limit)
            sampler.start()
            try:
                _pid, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # interrupted (Ctrl-C, SIGTERM): stop the playbook before leaving
                _stop_tree(proc.pid)
                os.waitpid(proc.pid, 0)
                raise
            finally:
                elapsed = time.perf_counter() - start
                sampler.done.set()
                sampler.join()
                self.current = None
        proc.returncode = os.waitstatus_to_exitcode(status)
        if sampler.stopped:  # the time until the stop, not the time the playbook took to go away
            elapsed = sampler.stopped_after
        run = Run(name=name, seconds=elapsed, rc=proc.returncode, stopped=sampler.stopped, log=log_file,
                  any_maxrss=usage.ru_maxrss * 1024, tree_pss=sampler.peak_pss)
        if rss_file.exists():
            run.main_maxrss = json.loads(rss_file.read_text())["maxrss_kib"] * 1024
        if count_file.exists():
            run.counts = json.loads(count_file.read_text())
        return run

    def stop_current(self) -> None:
        if self.current is not None and self.current.poll() is None:
            _stop_tree(self.current.pid)


def _stop_tree(pid: int) -> None:
    """Stop a playbook we started: SIGINT (Ansible stops its workers), then SIGKILL it and its descendants."""
    kids = _children_of(pid)
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid, "rb") as handle:
                if handle.read().split(b")")[-1].split()[0] == b"Z":
                    break
        except OSError:
            break
        time.sleep(0.1)
    for victim in [pid] + kids:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Sampler(threading.Thread):
    """Samples the memory of a run's processes every 0.5 s; stops the run at its time cap or memory limit."""

    def __init__(self, pid: int, start: float, cap: float, mem_limit: int):
        super().__init__(daemon=True)
        self.pid, self.start_time, self.cap, self.mem_limit = pid, start, cap, mem_limit
        self.done = threading.Event()
        self.peak_pss = 0
        self.stopped = ""
        self.stopped_after = 0.0  # seconds from the start to the stop

    def run(self) -> None:
        while not self.done.wait(0.5):
            total = sum(_pss(p) for p in [self.pid] + _children_of(self.pid))
            self.peak_pss = max(self.peak_pss, total)
            why = ""
            if time.perf_counter() - self.start_time > self.cap:
                why = "time"
            elif total > self.mem_limit:
                why = "memory"
            if why and not self.stopped:
                self.stopped = why
                self.stopped_after = time.perf_counter() - self.start_time
                _stop_tree(self.pid)


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# --- Leftovers -------------------------------------------------------------------------------------------

def _live_bench(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return MARKER in handle.read()
    except OSError:
        return False


def netns_names() -> List[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def remove_leftovers(own: bool = False) -> None:
    """Remove namespaces and directories podnet-bench-<pid>* of runs that are gone (own=True: this run's)."""
    def ours_to_remove(name: str) -> bool:
        m = STALE.match(name)
        if not m:
            return False
        pid = int(m.group(1))
        return pid == os.getpid() if own else not _live_bench(pid)

    for name in netns_names():
        if ours_to_remove(name):
            subprocess.run(["ip", "netns", "delete", name], check=False, stderr=subprocess.DEVNULL)
    for base in (LAB_ROOT_BASE, WORK_BASE):
        if base.is_dir():
            for entry in base.iterdir():
                if entry.is_dir() and ours_to_remove(entry.name) and not (entry / KEPT).exists():
                    shutil.rmtree(entry, ignore_errors=True)


# --- Measuring -------------------------------------------------------------------------------------------

def interleaved(config: Config, ours: Callable[[float], Run], base: Callable[[float], Run],
                base_timing: Optional[lib.Timing] = None, repeat: Optional[int] = None
                ) -> Tuple[lib.Timing, lib.Timing, List[Run]]:
    """Baseline first (unless ``base_timing`` holds earlier samples of the same baseline), then ours, stopped at
    BENCH_CAP x the baseline; a side whose first run was shorter than BENCH_CHEAP runs again, alternating with
    the other, up to ``repeat`` runs. Returns both timings (medians) and our runs."""
    repeat = repeat or config.repeat
    if base_timing is None or not base_timing.samples and not base_timing.capped:
        base_timing = lib.Timing()
        _add(base_timing, base(config.timeout), config.timeout)
    cap = config.timeout
    if not base_timing.capped:
        cap = min(config.timeout, max(config.cap_min, config.cap_ratio * base_timing.value))
    ours_timing = lib.Timing()
    runs = [ours(cap)]
    _add(ours_timing, runs[0], cap)
    for _unused in range(1, repeat):
        again = False
        if not base_timing.capped and base_timing.samples[0] < config.cheap \
                and len(base_timing.samples) < 2 * repeat:
            _add(base_timing, base(config.timeout), config.timeout)
            again = True
        if not ours_timing.capped and ours_timing.samples[0] < config.cheap:
            runs.append(ours(cap))
            _add(ours_timing, runs[-1], cap)
            again = True
        if not again:
            break
    return ours_timing, base_timing, runs


def _add(timing: lib.Timing, run: Run, cap: float) -> None:
    """Add a run's time; a stopped run makes the timing a lower bound (the cap, or the time when the run
    was stopped for using more than BENCH_MEM_LIMIT)."""
    if run.stopped == "time":
        timing.capped, timing.cap = True, cap
    elif run.stopped == "memory":
        log("%s: stopped after %.1f s for using %s (BENCH_MEM_LIMIT)" % (run.name, run.seconds,
                                                                         lib.bytes_text(run.peak)))
        timing.capped, timing.cap = True, run.seconds
    else:
        timing.samples.append(run.seconds)


def _short(name: str, width: int = 60) -> str:
    return name if len(name) <= width else name[:width - 3] + "..."


def check_ok(run: Run) -> None:
    if run.stopped:
        return
    if run.rc != 0:
        raise BenchFailure("%s failed (rc=%d, log %s):\n%s" % (run.name, run.rc, run.log, run.tail()))


def per_host(run: Run) -> int:
    if not run.counts:
        raise BenchFailure("%s: the counting callback wrote nothing (log %s):\n%s" % (run.name, run.log, run.tail()))
    return lib.per_host_task_count(run.counts["results"])  # type: ignore[arg-type]


class Bench:
    def __init__(self, config: Config):
        self.config = config
        self.work = WORK_BASE / OWNER
        self.runner = Runner(config, self.work)
        self.rows: List[lib.Row] = []
        self.notes: List[str] = []
        self.failed = False
        self.absent_netns = OWNER + "-absent"
        self.baselines: Dict[Tuple[int, int], lib.Timing] = {}
        self.inventories: Dict[int, Path] = {}
        self.base_runs: Dict[int, Run] = {}  # the last baseline run of each inventory size

    # -- plan items --

    def inventory(self, size: int) -> Path:
        if size not in self.inventories:
            path = self.work / ("hosts-%d" % size) / "hosts.json"
            write_json(path, lib.generate_inventory(size, self.absent_netns))
            self.inventories[size] = path
        return self.inventories[size]

    def plan_run(self, label: str, playbook_args: Sequence[str], size: int, expect_tasks: Optional[int],
                 cap: float) -> Run:
        inventory = self.inventory(size)
        for leftover in (".podnet_state.yml", ".podnet_state.yml.lock"):
            (inventory.parent / leftover).unlink(missing_ok=True)
        run = self.runner.playbook("%s-%d" % (label, size), ["-i", str(inventory)] + list(playbook_args), cap=cap)
        check_ok(run)
        if run.stopped:
            log("%s, %s hosts: stopped after %.1f s (%s cap)" % (label, lib.count_text(size), run.seconds,
                                                                 run.stopped))
            return run
        state = (inventory.parent / ".podnet_state.yml")
        last = lib.host_names(size)[-1]
        if not state.exists() or last not in state.read_text():
            raise BenchFailure("%s: no state file %s naming %s after the run (log %s)" % (run.name, state, last,
                                                                                          run.log))
        if expect_tasks is not None and per_host(run) != expect_tasks:
            raise BenchFailure("%s ran %d tasks per host, the calibration run %d: the baseline would be wrong"
                               % (run.name, per_host(run), expect_tasks))
        log("%s, %s hosts: %.1f s, peak memory %s" % (label, lib.count_text(size), run.seconds,
                                                      lib.bytes_text(run.peak)))
        return run

    def baseline_run(self, size: int, tasks: int) -> Run:
        play = write_json(self.work / ("set_fact-%d.json" % tasks), lib.set_fact_play(tasks))
        run = self.runner.playbook("set_fact%d-%d" % (tasks, size), ["-i", str(self.inventory(size)), str(play)])
        check_ok(run)
        if not run.stopped and per_host(run) != tasks:
            raise BenchFailure("%s: %d results per host, expected %d" % (run.name, per_host(run), tasks))
        log("baseline %d set_fact, %s hosts: %.1f s, peak memory %s" % (tasks, lib.count_text(size), run.seconds,
                                                                        lib.bytes_text(run.peak)))
        self.base_runs[size] = run
        return run

    def plan_item(self, key: str, title: str, playbook_args: Sequence[str], memory: bool) -> None:
        sizes = self.config.sizes
        try:
            calibration = self.plan_run(key + "-calibration", playbook_args, 10, None, self.config.timeout)
            tasks = per_host(calibration)
        except BenchFailure as exc:
            self.fail("%s: calibration" % title, str(exc))
            return
        self.notes.append("%s: %d tasks per host (counted in a 10-host run and checked in every timed run), so "
                          "its baseline is %d set_fact tasks; tasks: %s."
                          % (title, tasks, tasks, "; ".join(_short(t["name"]) for t in calibration.counts["tasks"])))
        ours_by_size: Dict[int, lib.Timing] = {}
        base_by_size: Dict[int, lib.Timing] = {}
        stopped_at: Optional[int] = None
        for size in sizes:
            item = "%s, %s hosts" % (title, lib.count_text(size))
            if stopped_at is not None:
                self.rows.append(lib.skipped_row(item, "<= %.1fx" % PLAN_RATIO, "%s hosts already stopped"
                                                 % lib.count_text(stopped_at)))
                continue
            try:
                key_base = (size, tasks)
                ours, base, runs = interleaved(
                    self.config,
                    lambda cap, size=size: self.plan_run(key, playbook_args, size, tasks, cap),
                    lambda cap, size=size: self.baseline_run(size, tasks),
                    base_timing=self.baselines.get(key_base))
                self.baselines[key_base] = base
            except BenchFailure as exc:
                self.fail(item, str(exc))
                break
            ours_by_size[size], base_by_size[size] = ours, base
            self.rows.append(lib.ratio_row(item, ours, base, PLAN_RATIO, "%d set_fact" % tasks))
            if memory and size == MEMORY_SIZE:
                self.memory_row(runs)
            if ours.capped:
                stopped_at = size
        done = sorted(ours_by_size)
        if len(done) >= 2:
            self.rows.append(lib.growth_row("%s, growth" % title, done[0], done[-1], ours_by_size, base_by_size,
                                            GROWTH_LIMIT))
        if memory and MEMORY_SIZE not in ours_by_size:
            why = ("not in BENCH_SIZES" if MEMORY_SIZE not in sizes
                   else "the plan at %s hosts was stopped first" % lib.count_text(stopped_at or 0))
            self.rows.append(lib.memory_row("peak memory, plan playbook, 5,000 hosts", None, MEMORY_LIMIT, False,
                                            why))

    def memory_row(self, runs: List[Run]) -> None:
        worst = max(runs, key=lambda r: r.peak)
        lower = bool(worst.stopped)
        base = ""
        if MEMORY_SIZE in self.base_runs:
            other = self.base_runs[MEMORY_SIZE]
            base = (" For comparison, the set_fact baseline on the same inventory: main process %s, all processes "
                    "%s." % (lib.bytes_text(other.main_maxrss or 0), lib.bytes_text(other.tree_pss)))
        self.rows.append(lib.memory_row("peak memory, plan playbook, 5,000 hosts", worst.peak, MEMORY_LIMIT, lower,
                                        "see the memory note"))
        self.notes.append(
            "Peak memory of the 5,000-host plan run%s: main ansible-playbook process %s (its own "
            "getrusage ru_maxrss, exact); the largest single process of the run %s (wait4 ru_maxrss: the main "
            "process or one of its forked workers); all its processes together %s (sum of PSS, sampled every "
            "0.5 s). The table shows the larger of the main process and the sum.%s"
            % (" (stopped early: a lower bound)" if lower else "",
               lib.bytes_text(worst.main_maxrss) if worst.main_maxrss else "unknown (killed)",
               lib.bytes_text(worst.any_maxrss), lib.bytes_text(worst.tree_pss), base))

    # -- converge --

    def lab_playbook(self, name: str, count: int, state: str, inventory_dir: Path) -> Run:
        extra = {"podnet_lab_state": state, "podnet_lab_name": name, "podnet_lab_nodes": count,
                 "podnet_lab_root": str(LAB_ROOT_BASE / name), "podnet_lab_inventory_dir": str(inventory_dir)}
        return self.runner.playbook("lab-%s-%s" % (state, name), ["podnet.lab.lab", "-e", json.dumps(extra)])

    def converge_item(self) -> None:
        ping = write_json(self.work / "ping3.json", lib.ping_play(3, "podnet_nodes"))
        for count in self.config.labs:
            item = "no-op converge, %d-node lab" % count
            name = "%s-l%d" % (OWNER, count)
            inventory_dir = self.work / ("lab-%d" % count)
            try:
                built = self.lab_playbook(name, count, "present", inventory_dir)
                check_ok(built)
                log("lab of %d nodes built in %.1f s" % (count, built.seconds))
                hosts = ["-i", str(inventory_dir / "hosts.yml")]
                first = self.runner.playbook("site-first-%d" % count, ["podnet.cluster.site"] + hosts)
                check_ok(first)
                log("first converge of %d nodes: %.1f s" % (count, first.seconds))
                not_noop: List[str] = []

                def site(cap: float) -> Run:
                    run = self.runner.playbook("site-noop-%d" % count, ["podnet.cluster.site"] + hosts, cap=cap)
                    check_ok(run)
                    if run.stopped:
                        log("no-op converge of %d nodes: stopped after %.1f s (%s cap)" % (count, run.seconds,
                                                                                           run.stopped))
                    else:
                        changed = [h for h, c in lib.parse_recap(run.output).items() if c.get("changed")]
                        not_noop.extend(changed)
                        log("no-op converge of %d nodes: %.1f s" % (count, run.seconds))
                    return run

                def base(cap: float) -> Run:
                    run = self.runner.playbook("ping3-%d" % count, hosts + [str(ping)], cap=cap)
                    check_ok(run)
                    log("3 ping tasks on %d nodes: %.1f s" % (count, run.seconds))
                    return run

                ours, baseline, _runs = interleaved(self.config, site, base)
                row = lib.ratio_row(item, ours, baseline, CONVERGE_RATIO, "3 ping")
                if not_noop:
                    row.note = "NOT a no-op: changed on %d hosts" % len(set(not_noop))
                    row.met = lib.met_text(False)
                self.rows.append(row)
                self.notes.append("%d-node lab: built in %.1f s, first converge %.1f s." % (count, built.seconds,
                                                                                            first.seconds))
            except BenchFailure as exc:
                self.fail(item, str(exc))
            finally:
                self.runner.stop_current()
                gone = self.lab_playbook(name, count, "absent", inventory_dir)
                if gone.rc != 0:
                    log("lab %s: removal by the lab playbook failed (rc=%d, log %s); removing by name"
                        % (name, gone.rc, gone.log))
                for ns in netns_names():
                    if ns == name or ns.startswith(name + "-"):
                        subprocess.run(["ip", "netns", "delete", ns], check=False)
                shutil.rmtree(LAB_ROOT_BASE / name, ignore_errors=True)

    # -- verify --

    def verify_item(self) -> None:
        """verify (full matrix and a sample) against a no-op site on the same lab; the sample must be <= 2x."""
        peers = self.config.verify_peers
        for count in self.config.verify_labs:
            item = "verify, %d-node lab" % count
            name = "%s-v%d" % (OWNER, count)
            inventory_dir = self.work / ("verify-lab-%d" % count)
            try:
                built = self.lab_playbook(name, count, "present", inventory_dir)
                check_ok(built)
                hosts = ["-i", str(inventory_dir / "hosts.yml")]
                first = self.runner.playbook("verify-site-first-%d" % count, ["podnet.cluster.site"] + hosts)
                check_ok(first)
                log("verify lab of %d nodes built in %.1f s, converged in %.1f s" % (count, built.seconds,
                                                                                     first.seconds))
                probes: Dict[str, str] = {}
                peaks: Dict[str, int] = {}

                def site(cap: float) -> Run:
                    run = self.runner.playbook("verify-site-noop-%d" % count, ["podnet.cluster.site"] + hosts, cap=cap)
                    check_ok(run)
                    peaks["site"] = max(peaks.get("site", 0), run.peak)
                    log("no-op site on %d nodes: %.1f s" % (count, run.seconds))
                    return run

                def verify(kind: str, setting: str) -> Callable[[float], Run]:
                    def one(cap: float) -> Run:
                        run = self.runner.playbook("verify-%s-%d" % (kind, count), ["podnet.cluster.verify"] + hosts
                                                   + ["-e", json.dumps({"podnet_verify_peers": setting})], cap=cap)
                        check_ok(run)
                        found = re.search(r"PASSED: (\d+) of (\d+) probes ok", run.output)
                        if not run.stopped and not found:
                            raise BenchFailure("verify (%s) on %d nodes did not pass (log %s):\n%s"
                                               % (kind, count, run.log, run.tail()))
                        if found:
                            probes[kind] = found.group(2)
                        peaks[kind] = max(peaks.get(kind, 0), run.peak)
                        log("verify (%s) on %d nodes: %.1f s" % (kind, count, run.seconds))
                        return run
                    return one

                sampled, baseline, _runs = interleaved(self.config, verify("sampled", str(peers)), site)
                # the full matrix is measured for comparison: let it run to its end (no 2x stop)
                roomy = dataclasses.replace(self.config, cap_ratio=max(self.config.cap_ratio, 20.0))
                full, baseline, _runs = interleaved(roomy, verify("full", "all"), site, base_timing=baseline)
                for kind, timing, target in (("full matrix", full, None), ("sampled, %d peers" % peers, sampled,
                                                                           VERIFY_RATIO)):
                    key = "full" if kind == "full matrix" else "sampled"
                    note = "%s probes; peak memory %s (no-op site %s)" % (
                        lib.count_text(int(probes.get(key, "0"))), lib.bytes_text(peaks.get(key, 0)),
                        lib.bytes_text(peaks.get("site", 0)))
                    if target is None:
                        row = lib.ratio_row("%s, %s" % (item, kind), timing, baseline, 99.0, "no-op site")
                        row.target, row.met = "(for comparison)", ""
                    else:
                        row = lib.ratio_row("%s, %s" % (item, kind), timing, baseline, target, "no-op site")
                    row.note = note
                    self.rows.append(row)
            except BenchFailure as exc:
                self.fail(item, str(exc))
            finally:
                self.runner.stop_current()
                gone = self.lab_playbook(name, count, "absent", inventory_dir)
                if gone.rc != 0:
                    log("lab %s: removal by the lab playbook failed (rc=%d, log %s); removing by name"
                        % (name, gone.rc, gone.log))
                for ns in netns_names():
                    if ns == name or ns.startswith(name + "-"):
                        subprocess.run(["ip", "netns", "delete", ns], check=False)
                shutil.rmtree(LAB_ROOT_BASE / name, ignore_errors=True)

    # -- routes --

    def routes_item(self) -> None:
        count = self.config.routes
        ns, peer_ns = OWNER + "-ra", OWNER + "-rb"
        address = routes_invocation.ON_LINK_ADDRESS
        routes = lib.peer_routes(count, address)
        task, play_vars = routes_invocation.routes_invocation(routes)
        common = {"hosts": "localhost", "connection": "local", "gather_facts": False}
        play_vars = dict(play_vars, ansible_python_interpreter="/usr/bin/python3")
        routes_play = write_json(self.work / "routes.json", [dict(common, name="Routes", vars=play_vars,
                                                                  tasks=[task])])
        ping_play = write_json(self.work / "routes-ping.json", [dict(common, name="Ping", vars=play_vars,
                                                                     tasks=[{"name": "Ping",
                                                                             "ansible.builtin.ping": {}}])])
        inventory = ["-i", "localhost,"]
        title = "routes, %s peers" % lib.count_text(count)
        try:
            for args in (["netns", "add", ns], ["netns", "add", peer_ns],
                         ["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer_ns],
                         ["-n", ns, "addr", "add", address, "dev", "eth0"],
                         ["-n", ns, "link", "set", "eth0", "up"], ["-n", peer_ns, "link", "set", "eth0", "up"],
                         ["-n", ns, "link", "set", "lo", "up"]):
                subprocess.run(["ip"] + list(args), check=True, capture_output=True)

            def ours_routes() -> int:
                out = subprocess.run(["ip", "-n", ns, "route", "show", "proto", str(routes_invocation.PROTOCOL)],
                                     check=True, capture_output=True, text=True).stdout
                return len(out.splitlines())

            def routes_run(kind: str, expect_changed: bool) -> Run:
                run = self.runner.playbook("routes-%s" % kind, inventory + [str(routes_play)], netns=ns)
                check_ok(run)
                changed = lib.parse_recap(run.output).get("localhost", {}).get("changed")
                if changed != int(expect_changed):
                    raise BenchFailure("%s: changed=%s, expected %d (log %s)" % (run.name, changed,
                                                                                 int(expect_changed), run.log))
                if ours_routes() != count:
                    raise BenchFailure("%s: %d routes afterwards, expected %d" % (run.name, ours_routes(), count))
                return run

            ping, add, again = lib.Timing(), lib.Timing(), lib.Timing()
            for _unused in range(self.config.routes_repeat):
                subprocess.run(["ip", "netns", "exec", ns] + routes_invocation.FLUSH, check=True, capture_output=True)
                if ours_routes() != 0:
                    raise BenchFailure("FLUSH left %d routes" % ours_routes())
                run = self.runner.playbook("routes-ping", inventory + [str(ping_play)], netns=ns)
                check_ok(run)
                _add(ping, run, self.config.timeout)
                _add(add, routes_run("add", True), self.config.timeout)
                _add(again, routes_run("again", False), self.config.timeout)
            log("routes: ping %.2f s, add %.2f s, no change %.2f s" % (ping.value, add.value, again.value))
            self.rows.append(lib.diff_row("%s, no change" % title, again, ping, ROUTES_NO_CHANGE, "1 ping"))
            self.rows.append(lib.diff_row("%s, add all" % title, add, ping, ROUTES_ADD, "1 ping"))
            self.notes.append("routes: %s (bench/routes_invocation.py) in a scratch namespace, ansible-playbook "
                              "with the local connection inside it; the routes travel as a play variable, and the "
                              "ping play carries the same variable." % next(k for k in task if k != "name"))
        except (BenchFailure, subprocess.CalledProcessError) as exc:
            self.fail(title, str(exc))
        finally:
            self.runner.stop_current()
            for name in (ns, peer_ns):
                if name in netns_names():
                    subprocess.run(["ip", "netns", "delete", name], check=False)

    # -- overlay (fabric vxlan) --

    def overlay_item(self) -> None:
        count = self.config.routes
        ns, peer_ns = OWNER + "-oa", OWNER + "-ob"
        address = overlay_invocation.ON_LINK_ADDRESS
        peers = lib.peer_routes(count, address)
        task, play_vars = overlay_invocation.overlay_invocation(peers)
        common = {"hosts": "localhost", "connection": "local", "gather_facts": False}
        play_vars = dict(play_vars, ansible_python_interpreter="/usr/bin/python3")
        overlay_play = write_json(self.work / "overlay.json", [dict(common, name="Overlay", vars=play_vars,
                                                                    tasks=[task])])
        ping_play = write_json(self.work / "overlay-ping.json", [dict(common, name="Ping", vars=play_vars,
                                                                      tasks=[{"name": "Ping",
                                                                              "ansible.builtin.ping": {}}])])
        inventory = ["-i", "localhost,"]
        title = "overlay, %s peers (%s entries)" % (lib.count_text(count), lib.count_text(3 * count))
        dev = overlay_invocation.DEVICE
        try:
            for args in (["netns", "add", ns], ["netns", "add", peer_ns],
                         ["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer_ns],
                         ["-n", ns, "addr", "add", address, "dev", "eth0"],
                         ["-n", ns, "link", "set", "eth0", "up"], ["-n", peer_ns, "link", "set", "eth0", "up"],
                         ["-n", ns, "link", "set", "lo", "up"]):
                subprocess.run(["ip"] + list(args), check=True, capture_output=True)

            def entries() -> int:
                out = 0
                for argv in (["ip", "-n", ns, "neigh", "show", "dev", dev, "nud", "permanent"],
                             ["bridge", "-n", ns, "fdb", "show", "dev", dev],
                             ["ip", "-n", ns, "route", "show", "dev", dev, "proto",
                              str(overlay_invocation.PROTOCOL)]):
                    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                    out += len([l for l in proc.stdout.splitlines() if "dst" in l or argv[0] == "ip"])
                return out

            def overlay_run(kind: str, expect_changed: bool) -> Run:
                run = self.runner.playbook("overlay-%s" % kind, inventory + [str(overlay_play)], netns=ns)
                check_ok(run)
                changed = lib.parse_recap(run.output).get("localhost", {}).get("changed")
                if changed != int(expect_changed):
                    raise BenchFailure("%s: changed=%s, expected %d (log %s)" % (run.name, changed,
                                                                                 int(expect_changed), run.log))
                if entries() != 3 * count:
                    raise BenchFailure("%s: %d entries afterwards, expected %d" % (run.name, entries(), 3 * count))
                return run

            ping, add, again = lib.Timing(), lib.Timing(), lib.Timing()
            for _repeat in range(self.config.routes_repeat):
                subprocess.run(["ip", "netns", "exec", ns] + overlay_invocation.FLUSH, capture_output=True, check=False)
                run = self.runner.playbook("overlay-ping", inventory + [str(ping_play)], netns=ns)
                check_ok(run)
                _add(ping, run, self.config.timeout)
                _add(add, overlay_run("add", True), self.config.timeout)
                _add(again, overlay_run("again", False), self.config.timeout)
            log("overlay: ping %.2f s, add %.2f s, no change %.2f s" % (ping.value, add.value, again.value))
            self.rows.append(lib.diff_row("%s, no change" % title, again, ping, OVERLAY_NO_CHANGE, "1 ping"))
            self.rows.append(lib.diff_row("%s, add all" % title, add, ping, OVERLAY_ADD, "1 ping"))
            self.notes.append("overlay: %s" % self.overlay_kernel_share(ns, peers))
        except (BenchFailure, subprocess.CalledProcessError) as exc:
            self.fail(title, str(exc))
        finally:
            self.runner.stop_current()
            for name in (ns, peer_ns):
                if name in netns_names():
                    subprocess.run(["ip", "netns", "delete", name], check=False)

    def overlay_kernel_share(self, ns: str, peers) -> str:
        """The kernel's own time for the same entries: the three batches and the three reads, by themselves."""
        dev = overlay_invocation.DEVICE
        lines = overlay_invocation.peer_lines(peers)
        neigh, fdb, routes = [], [], []
        for line in lines:
            f = line.split()
            neigh.append("neigh replace %s lladdr %s dev %s nud permanent" % (f[2], f[4], dev))
            fdb.append("fdb replace %s dev %s dst %s self permanent" % (f[4], dev, f[6]))
            routes.append("route replace %s via %s dev %s onlink proto %d" % (f[0], f[2], dev,
                                                                              overlay_invocation.PROTOCOL))
        times: Dict[str, List[float]] = {}
        for _repeat in range(self.config.routes_repeat):
            subprocess.run(["ip", "netns", "exec", ns] + overlay_invocation.FLUSH, capture_output=True, check=False)
            subprocess.run(["ip", "-n", ns, "link", "add", dev, "type", "vxlan", "id", "1", "local",
                            overlay_invocation.ON_LINK_ADDRESS.split("/", maxsplit=1)[0], "dstport", "4789", "nolearning"],
                           check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
            for key, argv, data in (("neigh", ["ip", "-n", ns, "-batch", "-"], neigh),
                                    ("fdb", ["bridge", "-n", ns, "-batch", "-"], fdb),
                                    ("route", ["ip", "-n", ns, "-batch", "-"], routes),
                                    ("read neigh", ["ip", "-n", ns, "-j", "neigh", "show", "dev", dev], None),
                                    ("read fdb", ["bridge", "-n", ns, "-j", "fdb", "show", "dev", dev], None),
                                    ("read routes", ["ip", "-n", ns, "-j", "route", "show", "dev", dev], None)):
                start = time.monotonic()
                subprocess.run(argv, input="\n".join(data) + "\n" if data else None, check=True,
                               capture_output=True, text=True)
                times.setdefault(key, []).append(time.monotonic() - start)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        write = med["neigh"] + med["fdb"] + med["route"]
        read = med["read neigh"] + med["read fdb"] + med["read routes"]
        return ("the kernel's share, measured by itself in the same namespace (median of %d): writing the %d "
                "entries %.2f s (ip -batch of %d neighbours %.2f s, bridge -batch of %d FDB entries %.2f s, ip -batch "
                "of %d routes %.2f s); reading them back %.2f s (ip -j neigh %.2f s, bridge -j fdb %.2f s, "
                "ip -j route %.2f s)." % (self.config.routes_repeat, 3 * len(lines), write, len(lines), med["neigh"],
                                          len(lines), med["fdb"], len(lines), med["route"], read,
                                          med["read neigh"], med["read fdb"], med["read routes"]))

    # -- all --

    def fail(self, item: str, message: str) -> None:
        self.failed = True
        log("FAILED %s: %s" % (item, message))
        self.rows.append(lib.Row(item, "failed", "", "", "", "NO", message.splitlines()[0][:100]))

    def run(self) -> int:
        config = self.config
        started = time.time()
        load_before = os.getloadavg()
        if self.absent_netns in netns_names():
            raise SystemExit("namespace %s exists; it must not" % self.absent_netns)
        self.work.mkdir(parents=True)
        log("work directory %s; items %s" % (self.work, ", ".join(config.items)))
        if "plan" in config.items:
            self.plan_item("plan", "plan playbook", ["podnet.cluster.plan"], memory=True)
        if "site-plan" in config.items:
            self.plan_item("site-plan", "plan part of site", config.site_plan, memory=False)
        if "converge" in config.items:
            self.converge_item()
        if "verify" in config.items:
            self.verify_item()
        if "routes" in config.items:
            self.routes_item()
        if "overlay" in config.items:
            self.overlay_item()
        report = self.report(started, load_before)
        print(report)
        if config.out:
            Path(config.out).write_text(report + "\n")
        if self.failed:
            return 1
        if config.strict and any(r.met != "yes" for r in self.rows):
            return 1
        return 0

    def report(self, started: float, load_before: Tuple[float, float, float]) -> str:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=str(REPO), capture_output=True,
                                text=True, check=False).stdout.strip() or "unknown"
        from ansible import __version__ as ansible_version  # pylint: disable=import-outside-toplevel
        head = ("podnet.cluster scale benchmark: commit %s, ansible-core %s, Python %s, %d CPUs, "
                "load average %.1f at the start, %.1f at the end, %.1f at most when a run started; %.0f s in all."
                % (commit, ansible_version, platform.python_version(), os.cpu_count() or 0, load_before[0],
                   os.getloadavg()[0], max(self.runner.loads or [0.0]), time.time() - started))
        caps = ("Times are wall-clock seconds of whole ansible-playbook runs; a run shorter than %.0f s is "
                "repeated (up to %d runs, alternating with its baseline; the routes item: %d rounds) and the median "
                "shown. A measured run is stopped at %.1fx its baseline (at least %.0f s): '> N s (stopped)' then "
                "proves the target missed, and the larger sizes of that plan item are not run."
                % (self.config.cheap, self.config.repeat, self.config.routes_repeat, self.config.cap_ratio,
                   self.config.cap_min))
        lines = [head, "", lib.format_table(self.rows), "", lib.summary(self.rows), "", caps]
        busy = max([load_before[0], os.getloadavg()[0]] + self.runner.loads)
        if busy > (os.cpu_count() or 1):
            lines.append("- The machine was busy (load average up to %.1f on %d CPUs): other processes shared the "
                         "CPUs, so times are longer and ratios noisier than on an idle machine." % (busy,
                                                                                                    os.cpu_count() or 1))
        lines += ["- " + note for note in self.notes]
        return "\n".join(lines)


def main() -> int:
    config = Config.from_env()
    if os.geteuid() != 0:
        print("the benchmark needs root (network namespaces for the labs and the routes node)")
        return 1
    remove_leftovers()
    bench = Bench(config)

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        return bench.run()
    finally:
        bench.runner.stop_current()
        if config.keep:
            for name in netns_names():
                m = STALE.match(name)
                if m and int(m.group(1)) == os.getpid():
                    subprocess.run(["ip", "netns", "delete", name], check=False)
            if bench.work.is_dir():
                (bench.work / KEPT).write_text("kept on request (BENCH_KEEP); later runs leave it alone\n")
            log("kept %s" % bench.work)
        else:
            remove_leftovers(own=True)


if __name__ == "__main__":
    sys.exit(main())
