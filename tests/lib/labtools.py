# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Helpers for tests that build labs: run Ansible, read the recap, build and remove a lab by name."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest
import yaml

from lib import cputime, forkserver
from lib.netns_backend import netns_exists

REPO = Path(__file__).resolve().parents[2]
# The Ansible binaries the tests run: those of PODNET_VENV when it is set (make core-oldest points it at the
# virtualenv of the oldest ansible-core the collection supports), else those beside the Python running pytest.
BIN = Path(os.environ["PODNET_VENV"]) / "bin" if os.environ.get("PODNET_VENV") else Path(sys.executable).parent
LAB_ROOT_BASE = "/var/tmp/podnet-lab"
# The nodes' compile cache that every lab of a test session shares (podnet.lab.lab_topology's code_cache): each
# module zip's files are compiled once per session, not once per lab and node (the first module calls of a new lab,
# made on all its nodes at once, found an empty cache of their own). Its entries are named by the SHA-256 of their
# source, so labs of other code (make core-oldest's ansible-core) never take each other's. PODNET_CODE_CACHE names
# another directory (make core-oldest's session, which runs beside make test's in the same checkout); the session
# empties it when it starts (``reset_code_cache``).
CODE_CACHE = Path(os.environ.get("PODNET_CODE_CACHE") or REPO / "tests" / "output" / "code-cache")


def reset_code_cache() -> None:
    """An empty ``CODE_CACHE`` (tests/conftest.py: once per session, by the controller)."""
    shutil.rmtree(CODE_CACHE, ignore_errors=True)
    CODE_CACHE.mkdir(parents=True, exist_ok=True)


def netns_list() -> List[str]:
    """Names of the named network namespaces (ip netns list)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def remove_stale_namespaces(prefix: str) -> None:
    """Delete namespaces <prefix><pid>-... of earlier, killed runs (never those of a live process)."""
    for name in netns_list():
        if not name.startswith(prefix):
            continue
        try:
            owner = int(name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if owner != os.getpid() and not pid_alive(owner):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ansible_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH="%s:%s" % (BIN, env.get("PATH", "")),
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def run(argv: List[str], check: bool = True, cwd: Path = REPO, **extra_env: str) -> subprocess.CompletedProcess:
    """Run an Ansible command in ``cwd`` (a checkout of the collection: its ansible.cfg applies)."""
    env = ansible_env(**dict({"ANSIBLE_CONFIG": str(cwd / "ansible.cfg")}, **extra_env))
    wall, cpu = time.monotonic(), cputime.children_cpu()
    proc = forkserver.run(argv, cwd=cwd, env=env, timeout=300)
    cputime.record_run(argv, time.monotonic() - wall, cputime.children_cpu() - cpu)
    if check and proc.returncode != 0:
        pytest.fail("%s failed (rc=%d)\n--- stdout\n%s\n--- stderr\n%s"
                    % (" ".join(argv), proc.returncode, proc.stdout[-6000:], proc.stderr[-3000:]), pytrace=False)
    return proc


def recap(stdout: str) -> Dict[str, Dict[str, int]]:
    """PLAY RECAP lines as {host: {ok: n, changed: n, ...}}."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", stdout, re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def adhoc_command(inventory: Path, pattern: str, command: str) -> Dict[str, Dict[str, object]]:
    """Run an ad-hoc ``command`` module call; {host: {"rc": int, "stdout": str}} from the default callback."""
    proc = run([str(BIN / "ansible"), "-i", str(inventory), pattern, "-m", "command", "-a", command],
               ANSIBLE_STDOUT_CALLBACK="default")
    results: Dict[str, Dict[str, object]] = {}
    for block in re.split(r"^(?=\S+ \| \w+ \| rc=)", proc.stdout, flags=re.M):
        m = re.match(r"^(\S+) \| \w+ \| rc=(\d+) >>\n(.*)", block, re.S)
        if m:
            results[m.group(1)] = {"rc": int(m.group(2)), "stdout": m.group(3).rstrip("\n")}
    return results


def in_ns(ns: str, *argv: str) -> subprocess.CompletedProcess:
    """Run a command inside a namespace (no per-node overlays needed)."""
    return subprocess.run(["nsenter", "--net=/run/netns/%s" % ns, "--"] + list(argv), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False, timeout=30)


def ping(ns: str, target: str, tries: int = 1) -> bool:
    """One echo request answered within 2 s, in up to ``tries`` attempts (a path's first packet can be lost to
    neighbour discovery while the machine's neighbour tables are busy with other labs)."""
    for _attempt in range(tries):
        if in_ns(ns, "ping", "-c", "1", "-W", "2", target).returncode == 0:
            return True
    return False


def ra_dir(lab: "Lab") -> Path:
    """The lab router's RA sender directory (option podnet_lab_router_advertisements)."""
    return Path(lab.root) / ("%s-router" % lab.name) / "ra"


def advertise(lab: "Lab", lifetime: int, interval: Optional[int] = None) -> None:
    """Make the lab router advertise ``lifetime`` from now on (0: it withdraws itself as the default router), at once:
    the settings file, then SIGHUP to the sender by its pid file."""
    settings = ra_dir(lab) / "ra.json"
    data = json.loads(settings.read_text())
    data["lifetime"] = int(lifetime)
    if interval is not None:
        data["interval"] = int(interval)
    settings.write_text(json.dumps(data) + "\n")
    pid = int((ra_dir(lab) / "ra.pid").read_text().strip())
    assert b"ra_sender.py" in Path("/proc/%d/cmdline" % pid).read_bytes(), "pid %d is not the RA sender" % pid
    os.kill(pid, signal.SIGHUP)


def ra_default_routes(ns: str) -> List[Dict[str, Any]]:
    """IPv6 default routes that the namespace's kernel learned from router advertisements."""
    out = in_ns(ns, "ip", "-6", "-json", "route", "show", "default", "proto", "ra").stdout.strip()
    return json.loads(out) if out else []


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something true; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("after %.0f s: %s" % (timeout, what), pytrace=False)
        time.sleep(interval)


def settled(namespaces: Sequence[str], timeout: float = 30.0) -> None:
    """Wait until no address of any of ``namespaces`` is tentative: IPv6 duplicate address detection of a new link's
    addresses (its link-local one, for one) ends a second or two after the link comes up, and their routes in table
    local appear then; the kernel's doing, not a run's, so a test compares a settled node. Fails the test naming
    the namespaces still tentative after ``timeout`` s."""
    def tentative() -> List[str]:
        return [ns for ns in namespaces if "tentative" in in_ns(ns, "ip", "-o", "addr", "show").stdout]
    wait_until(lambda: not tentative(), timeout, "addresses still tentative in %s" % ", ".join(namespaces))


def _pid_is_pytest(pid: int) -> bool:
    """True for a live pytest process, a pytest-xdist worker included (its own command line is a bare
    ``python -c``: its parent is the pytest that started it)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            if b"pytest" in fh.read():
                return True
        with open("/proc/%d/stat" % pid, "rb") as fh:
            parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
        with open("/proc/%d/cmdline" % parent, "rb") as fh:
            return b"pytest" in fh.read()
    except (OSError, ValueError, IndexError):
        return False


def remove_stale_labs(prefix: str) -> None:
    """Remove namespaces and directories of earlier test runs (<prefix><pid>-*) whose pytest is gone."""
    pattern = re.compile(r"^%s(\d+)(-.*)?$" % re.escape(prefix))
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        names = []
    for name in names:
        m = pattern.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_is_pytest(int(m.group(1))):
            subprocess.run(["ip", "netns", "delete", name], check=False, stderr=subprocess.DEVNULL)
    if os.path.isdir(LAB_ROOT_BASE):
        for name in os.listdir(LAB_ROOT_BASE):
            m = pattern.match(name)
            if m and not m.group(2) and int(m.group(1)) != os.getpid() and not _pid_is_pytest(int(m.group(1))):
                shutil.rmtree(os.path.join(LAB_ROOT_BASE, name), ignore_errors=True)


@dataclass
class Lab:
    name: str
    root: str
    inventory_dir: Path
    nodes: List[str]
    first_run: Optional[subprocess.CompletedProcess] = None
    rootns_before: Dict[str, str] = field(default_factory=dict)
    pids: List[int] = field(default_factory=list)
    lab_vars: Dict[str, Any] = field(default_factory=dict)
    # the checkout whose playbooks build the lab and run on it (another commit's worktree, say)
    repo: Path = REPO
    # the nodes' compile cache (the lab's option code_cache); None: the lab's own, <root>/code-cache
    code_cache: Optional[str] = None

    @property
    def hosts_yml(self) -> Path:
        return self.inventory_dir / "hosts.yml"

    @property
    def namespaces(self) -> List[str]:
        return ["%s-sw" % self.name, "%s-router" % self.name, "%s-ext" % self.name] + self.nodes

    def node_root(self, node: str) -> str:
        return "%s/%s" % (self.root, node)

    def inventory(self, name: str, drop: Sequence[str] = (), group_vars: Optional[Dict[str, Any]] = None,
                  host_vars: Optional[Dict[str, Dict[str, Any]]] = None, routers: Optional[Sequence[str]] = None,
                  state_file: str = ".podnet_state.yml") -> Path:
        """Another inventory of this lab, ``<inventory_dir>/<name>.yml``: without the nodes of ``drop``, with more
        variables of the node group and of its hosts, the group podnet_routers holding ``routers`` (none: as the
        lab has it; empty: no such group), and the plan's state file named (beside hosts.yml: every inventory of
        the lab shares it)."""
        data = yaml.safe_load(self.hosts_yml.read_text())
        children = data["all"]["children"]["podnet_lab"]["children"]
        if routers is not None:
            children.pop("podnet_routers", None)
            if routers:
                children["podnet_routers"] = {"hosts": {r: {} for r in routers}}
        group = children["podnet_nodes"]
        group["vars"]["podnet_state_file"] = str(self.inventory_dir / state_file)
        group["vars"].update(group_vars or {})
        for host in drop:
            del group["hosts"][host]
        for host, values in (host_vars or {}).items():
            group["hosts"][host] = dict(group["hosts"][host] or {}, **values)
        path = self.inventory_dir / ("%s.yml" % name)
        path.write_text(yaml.safe_dump(data))
        return path

    def playbook(self, state: str = "present", check: bool = True, *more: str) -> subprocess.CompletedProcess:
        extra = {
            "podnet_lab_state": state,
            "podnet_lab_name": self.name,
            "podnet_lab_nodes": len(self.nodes),
            "podnet_lab_root": self.root,
            "podnet_lab_inventory_dir": str(self.inventory_dir),
        }
        if self.code_cache and self.repo == REPO:
            extra["podnet_lab_code_cache"] = self.code_cache
        extra.update(self.lab_vars)
        # older trees (bench/compare_state.py runs old commits) have the lab in podnet.cluster
        playbook = "podnet.lab.lab" if (self.repo / "lab" / "galaxy.yml").exists() else "podnet.cluster.lab"
        return run([str(BIN / "ansible-playbook"), playbook, "-e", json.dumps(extra)] + list(more),
                   check=check, cwd=self.repo)

    def build(self) -> subprocess.CompletedProcess:
        """The lab as ``playbook("present")`` builds it, from its module alone (podnet.lab.lab_topology, which also
        writes the inventory), run as a program as ``remove`` runs it: 0.4 CPU-s where the playbook costs 2.9 (a
        lab is built once per test module). The role's own checks and options are tested through the playbook
        (test_lab.py, test_operator.py, molecule); another checkout (an older commit) is built by its playbook."""
        if self.repo != REPO:
            return self.playbook("present")
        from ansible_collections.podnet.lab.plugins.modules import lab_topology  # (sys.path: set above)
        options = yaml.safe_load(lab_topology.DOCUMENTATION)["options"]
        args: Dict[str, Any] = {"name": self.name, "root": self.root, "inventory_dir": str(self.inventory_dir),
                                "node_count": len(self.nodes), "state": "present"}
        if self.code_cache:
            args["code_cache"] = self.code_cache
        for key, value in self.lab_vars.items():  # the role's variable podnet_lab_<option> is the option
            option = key[len("podnet_lab_"):] if key.startswith("podnet_lab_") else key
            if option == "nodes":  # the role takes a count or a list of names
                args.pop("node_count")
                args["nodes" if isinstance(value, list) else "node_count"] = value
            elif option in options and option != "state":
                args[option] = value
            else:
                raise ValueError("lab %s: %s is no option of podnet.lab.lab_topology (build it with playbook())"
                                 % (self.name, key))
        return self._module(args)

    def _module(self, args: Dict[str, Any]) -> subprocess.CompletedProcess:
        """podnet.lab.lab_topology with ``args``, run as a program (its arguments in a file, as Ansible's own
        module tests run modules); fails the test when it fails."""
        with tempfile.NamedTemporaryFile("w", prefix="podnet-lab-", suffix=".json") as args_file:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, args_file)
            args_file.flush()
            proc = run([str(BIN / "python"), "-m", "ansible_collections.podnet.lab.plugins.modules.lab_topology",
                        args_file.name], check=False, PYTHONPATH=str(REPO / ".collections"))
        if args["state"] == "present" and proc.returncode != 0:
            pytest.fail("building lab %s failed (rc=%d)\n%s%s"
                        % (self.name, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]), pytrace=False)
        return proc

    def remove(self) -> subprocess.CompletedProcess:
        """The lab role's removal without the playbook around it: its module (podnet.lab.lab_topology,
        state=absent) run as a program, with its arguments in a file, as Ansible's own module tests run modules.
        It kills the lab's processes, deletes its namespaces and its directory, as the role's removal does; the
        role also removes the inventory files, which ``destroy`` removes with the inventory directory. Costs
        0.2 CPU-s where the playbook costs 2 (a lab finalizer runs once per test module)."""
        args = {"name": self.name, "root": self.root, "state": "absent"}
        if "podnet_lab_nodes" in self.lab_vars:  # named nodes, as new_lab passes them to the role
            args["nodes"] = list(self.lab_vars["podnet_lab_nodes"])
        else:
            args["node_count"] = len(self.nodes)
        return self._module(args)

    def destroy(self) -> None:
        """Remove everything of this lab, whatever state it is in."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = ""
        if (any(netns_exists(ns) for ns in self.namespaces) or os.path.exists(self.root)
                or self.hosts_yml.exists()):
            if self.repo == REPO:
                proc = self.remove()
                leftovers = [ns for ns in self.namespaces if netns_exists(ns)]
                leftovers += [self.root] if os.path.exists(self.root) else []
                if proc.returncode != 0 or leftovers:
                    left = "removing lab %s (rc=%d) left %s\n%s%s" % (
                        self.name, proc.returncode, leftovers, proc.stdout[-3000:], proc.stderr[-3000:])
            else:
                self.playbook("absent", check=False)
        for ns in self.namespaces + ["%s-hand" % self.name]:
            if netns_exists(ns):
                subprocess.run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.inventory_dir, ignore_errors=True)
        if left:  # everything is gone by now; say what the lab's own removal missed
            pytest.fail(left, pytrace=False)


def new_lab(prefix: str, inventory_dir: Path, request, node_names: Optional[List[str]] = None, count: int = 3,
            lab_vars: Optional[Dict[str, Any]] = None, code_cache: Optional[str] = str(CODE_CACHE)) -> Lab:
    """A lab named <prefix><pid>, removed by a finalizer, after removing leftovers of earlier killed runs.

    Not built yet: call ``build()`` (or ``playbook("present")``, the role). ``node_names`` (suffixes) gives named
    nodes (``<lab>-<suffix>``, passed as a list to ``podnet_lab_nodes``); otherwise ``<lab>-node1..count``. The
    nodes' compile cache is the session's (``CODE_CACHE``); ``code_cache=None`` leaves the lab its own.
    """
    remove_stale_labs(prefix)
    name = "%s%d" % (prefix, os.getpid())
    spec = Lab(
        name=name,
        root="%s/%s" % (LAB_ROOT_BASE, name),
        inventory_dir=inventory_dir,
        nodes=["%s-%s" % (name, n) for n in node_names] if node_names
        else ["%s-node%d" % (name, i) for i in range(1, count + 1)],
        lab_vars=dict(lab_vars or {}),
        code_cache=code_cache,
    )
    if node_names:
        spec.lab_vars["podnet_lab_nodes"] = spec.nodes
    request.addfinalizer(spec.destroy)
    return spec
