# SPDX-License-Identifier: Apache-2.0
"""Helpers of the module tests (imported by conftest.py and the test files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lib import forkserver


REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")
PREFIX = "podnet-t-mod-"


class Netns:
    """A scratch network namespace with helpers to run commands in it."""

    def __init__(self, name):
        self.name = name

    def run(self, *cmd, check=True, input=None):
        proc = subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True, text=True,
                              input=input, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("%s in %s failed: %s%s" % (" ".join(cmd), self.name, proc.stdout, proc.stderr))
        return proc.stdout

    def ip(self, *args, check=True):
        proc = subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("ip -n %s %s failed: %s" % (self.name, " ".join(args), proc.stderr))
        return proc.stdout

    def ip_json(self, *args):
        out = self.ip("-json", *args).strip()
        return json.loads(out) if out else []

    def routes(self, family=4, proto=None, table="main"):
        args = ["-%d" % family, "route", "show", "table", table]
        if proto is not None:
            args += ["proto", str(proto)]
        return self.ip_json(*args)

    def save(self, table, family=4):
        return self.run("ip6tables-save" if family == 6 else "iptables-save", "-t", table)

    def rules(self, table, family=4):
        """The -A lines of iptables-save for ``table``."""
        return [line for line in self.save(table, family).splitlines() if line.startswith("-A ")]

    def sysctl(self, key):
        return self.run("cat", "/proc/sys/" + key.replace(".", "/")).strip()

    def play(self, tasks, check=False, diff=True, timeout=120):
        return run_playbook(tasks, netns=self.name, check=check, diff=diff, timeout=timeout)

    def engine(self, steps, **kwargs):
        """Engine steps run inside this namespace (see run_engine)."""
        return run_engine(steps, netns=self.name, **kwargs)

    def module(self, module, args, check=False, diff=True):
        return self.play([{"name": module, module: args}], check=check, diff=diff)[0]


def run_playbook(tasks, netns=None, check=False, diff=True, timeout=120, path_prefix=None, wrap=None):
    """Run ``tasks`` (list of task dicts) in one ansible-playbook process, inside ``netns``.

    ``path_prefix`` goes first on PATH (for example a directory whose iptables-save is iptables-legacy-save);
    ``wrap`` is a shell snippet run before ansible-playbook in the same process (``exec`` follows it).

    Every task gets ``ignore_errors: true`` so that one playbook can exercise several error
    cases; returns the list of result dicts, one per task, in order.
    """
    tasks = [dict(t, ignore_errors=True) for t in tasks]
    play = [{
        "name": "podnet module test",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": "/usr/bin/python3"},
        "tasks": tasks,
    }]
    # JSON is valid YAML and Ansible's loader parses it much faster (big route lists)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="podnet-modtest-", delete=False) as handle:
        handle.write(json.dumps(play))
        path = handle.name
    try:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
                   ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0", PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
        if path_prefix:
            env["PATH"] = "%s:%s" % (path_prefix, env["PATH"])
        cmd = [ANSIBLE_PLAYBOOK, "-i", "localhost,", path]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if wrap:
            cmd = ["sh", "-c", '%s; exec "$@"' % wrap, "wrap"] + cmd
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        proc = forkserver.run(cmd, cwd=REPO, env=env, timeout=timeout)
    finally:
        os.unlink(path)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    if report is not None:
        results = [result for play in report["plays"] for task in play["tasks"]
                   for result in task["hosts"].values()]
    else:
        raise AssertionError("no results from ansible-playbook (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout,
                                                                                    proc.stderr))
    if len(results) != len(tasks):
        raise AssertionError("expected %d task results, got %d:\n%s" % (len(tasks), len(results), proc.stdout))
    return results


def ok(result):
    """Assert a task succeeded and return it."""
    assert not result.get("failed"), result.get("msg", result)
    return result


def failed(result):
    """Assert a task failed and return its message."""
    assert result.get("failed"), "expected a failure, got %r" % (result,)
    return result.get("msg", "")


# The engines the node module (podnet.cluster.node_state) runs, driven directly: one Python process per call of
# run_engine, inside the namespace, each step planned (EngineError before any write) and then applied or, in check
# mode, only planned (chains: iptables-restore --test), as node_state does for each part of a node's document.
ENGINE_DRIVER = r"""
import json, sys
from ansible_collections.podnet.cluster.plugins.module_utils.engine import bridge, chains, jsonfile, overlay, sysctl
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, ProcessRunner

def step(item):
    runner = ProcessRunner(check_mode=item.get("check", False))
    kind, args, check = item["engine"], item["args"], item.get("check", False)
    warnings = []
    if kind == "bridge":
        change = bridge.plan_bridge(runner, **args)
        if change["changed"] and not check:
            bridge.apply_bridge(runner, change)
        warnings += change.pop("warnings", [])
    elif kind == "chains":
        change = chains.plan_chains(runner, **args)
        if change["changed"]:
            (chains.test_chains if check else chains.apply_chains)(runner, change)
    elif kind == "sysctl":
        change = sysctl.plan_sysctl(warn=warnings.append, **args)
        if change["changed"] and not check:
            sysctl.apply_sysctl(change)
        change["content"] = change.get("content")
        change.pop("to_write", None)
    elif kind == "json":
        change = jsonfile.plan_json(**args)
        if change["changed"] and not check:
            jsonfile.apply_json(change)
        change.pop("_write", None)
        change.pop("before", None)
    elif kind == "overlay":
        change = overlay.plan_overlay(runner, **args)
        if change["changed"] and not check:
            overlay.apply_overlay(runner, change)
    else:
        raise SystemExit("unknown engine %r" % kind)
    change["warnings"] = warnings + runner.warnings
    return change

out = []
for item in json.loads(sys.stdin.read()):
    try:
        out.append(step(item))
    except EngineError as exc:
        out.append(dict(exc.details, failed=True, msg=exc.msg))
print(json.dumps(out, default=str))
"""


def run_engine(steps, netns=None, path_prefix=None, wrap=None, timeout=120):
    """Run engine ``steps`` (``{"engine": bridge|chains|sysctl|json|overlay, "args": {...}, "check": bool}``) in one
    Python process, inside ``netns`` (``wrap``: a shell snippet run first, in the same process; ``path_prefix``
    goes first on PATH). Returns one result per step: the engine's change, or ``failed`` and ``msg``."""
    cmd = [str(BIN / "python"), "-c", ENGINE_DRIVER]
    if wrap:
        cmd = ["sh", "-c", '%s; exec "$@"' % wrap, "wrap"] + cmd
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"))
    if path_prefix:
        env["PATH"] = "%s:%s" % (path_prefix, env.get("PATH", ""))
    proc = subprocess.run(cmd, input=json.dumps(steps), capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError("the engine driver failed (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    results = json.loads(proc.stdout)
    assert len(results) == len(steps)
    return results
