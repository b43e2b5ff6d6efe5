# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""How the engines run commands: every command by :func:`spawn`; the runner of a module finds commands and warns
through its AnsibleModule, the runner of the boot-time restore program by itself.

Standard library only (Python 3.8+).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading

SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")


class EngineError(Exception):
    """A problem that stops the engine before (or while) it writes; ``details`` go into the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ProcessRunner(object):
    """Runs commands with subprocess; used by the restore program, outside Ansible."""

    check_mode = False

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.warnings = []

    def which(self, name):
        found = shutil.which(name)
        if found:
            return found
        for directory in SBIN_DIRS:
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
        raise EngineError("the command %s is not installed on this node (looked in PATH and %s)"
                          % (name, ", ".join(SBIN_DIRS)))

    def run(self, argv, data=None):
        return spawn(argv, data)

    def warn(self, msg):
        self.warnings.append(msg)


def spawn(argv, data=None, timeout=None, env=None):
    """(rc, out, err) of ``argv`` run with ``LC_ALL=C``, ``data`` (text or bytes) on its standard input.

    Without a ``preexec_fn`` (``AnsibleModule.run_command`` always sets one), Python starts the command with
    ``vfork``: a module process of 40 MB pays about a millisecond per command instead of four for a full fork
    and its copied pages. The arguments are passed as they are (``run_command`` would expand ``~`` and ``$VAR``
    in each). ``env`` replaces this process's environment (``LC_ALL=C`` still set). A command that cannot be
    started gives rc 127 and the reason as its standard error; one still running after ``timeout`` seconds is
    killed and gives rc 124 (as coreutils' ``timeout``) and says so."""
    try:
        proc = subprocess.run(list(argv), input=data.encode("utf-8") if isinstance(data, str) else data,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(os.environ if env is None else env, LC_ALL="C"), timeout=timeout, check=False)
    except OSError as exc:
        return 127, "", "cannot run %s: %s" % (argv[0], exc)
    except subprocess.TimeoutExpired:
        return 124, "", "%s: still running after %s s, killed" % (argv[0], timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


class ModuleRunner(object):
    """Runs commands for an AnsibleModule: found with its get_bin_path, run by :func:`spawn`, warnings through
    its warn."""

    def __init__(self, module):
        self.module = module
        self.check_mode = module.check_mode

    def which(self, name):
        # PATH first (a host whose iptables are the legacy ones, a wrapper), then the sbin directories
        path = self.module.get_bin_path(name, required=False)
        if not path:
            raise EngineError("the command %s is not installed on this node" % name)
        return path

    def run(self, argv, data=None):
        return spawn(argv, data)

    def warn(self, msg):
        self.module.warn(msg)


@contextlib.contextmanager
def reads_once(runner):
    """While the node is planned (nothing is written), a read that several parts make (the bridge's link and
    addresses, every address, a main table, a table's iptables-save) runs once: ``read`` answers the same command
    again from its first answer. Outside this context ``read`` always runs the command."""
    previous = getattr(runner, "_podnet_reads", None)
    runner._podnet_reads = {} if previous is None else previous
    try:
        yield
    finally:
        runner._podnet_reads = previous


def read(runner, argv):
    """(rc, out, err) of a command that only reads the node (see reads_once)."""
    answers = getattr(runner, "_podnet_reads", None)
    if answers is None:
        return runner.run(argv)
    key = tuple(argv)
    if key not in answers:
        answers[key] = runner.run(argv)
    return answers[key]


def run_reads(runner, argvs):
    """[(rc, out, err)] of read-only commands run at the same time, in the order of ``argvs``.

    Reading large kernel tables (thousands of routes, neighbours, FDB entries) is mostly the kernel's dump time;
    side by side they cost about the longest one. Each command runs in its own thread (each thread reads its own
    pipes, so no process waits on a full pipe). A runner of another kind (a test's canned runner) runs them one
    after the other through its own ``run``. Inside ``reads_once`` a command another part read already is answered
    from that read, and what runs here answers the next ``read`` of it; a command listed twice runs once.
    """
    answers = getattr(runner, "_podnet_reads", None)
    known = {} if answers is None else answers
    todo = [argv for argv in dict.fromkeys(tuple(argv) for argv in argvs) if argv not in known]
    for argv, result in zip(todo, _side_by_side(runner, [list(argv) for argv in todo])):
        known[argv] = result
    return [known[tuple(argv)] for argv in argvs]


def _side_by_side(runner, argvs):
    """[(rc, out, err)] of ``argvs``, each in a thread of its own (see run_reads)."""
    if not isinstance(runner, (ProcessRunner, ModuleRunner)) or len(argvs) < 2:
        return [runner.run(argv) for argv in argvs]
    results = [None] * len(argvs)

    def one(index, argv):
        results[index] = spawn(argv)

    threads = [threading.Thread(target=one, args=(i, argv)) for i, argv in enumerate(argvs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def fail_module(module, exc, **extra):
    """fail_json with an EngineError's message and details."""
    data = dict(exc.details)
    data.update(extra)
    module.fail_json(msg=exc.msg, **data)


def diff_only(module, result):
    """Drop ``diff`` from a result unless the run asked for diffs (--diff)."""
    if not getattr(module, "_diff", False) or result.get("diff") is None:
        result.pop("diff", None)
    return result


def run_change(module, plan, apply, brief=None):
    """What the engine modules of one kind of kernel table (routes, overlay) do once their arguments are checked:
    ``plan(runner)`` computes the whole change, ``apply(runner, change)`` makes it unless in check mode, an
    EngineError fails the module with its message and details. Without --diff the batch commands are left out
    and ``brief(change)`` may shorten the rest (long lists, the echoed arguments); then the module exits."""
    runner = ModuleRunner(module)
    try:
        change = plan(runner)
        if change["changed"] and not module.check_mode:
            apply(runner, change)
    except EngineError as exc:
        fail_module(module, exc)
    if not module._diff:
        change.pop("commands", None)  # thousands of lines: returned with --diff, like the diff
        if brief is not None:
            brief(change)
    module.exit_json(**diff_only(module, change))
