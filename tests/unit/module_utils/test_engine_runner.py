# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""engine.runner.spawn, which both runners use: real processes, no stand-ins."""

from __future__ import annotations

import sys

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import ModuleRunner, ProcessRunner, spawn

ECHO = [sys.executable, "-c",
        "import os, sys; data = sys.stdin.buffer.read(); sys.stdout.write(repr((sys.argv[1:], data, "
        "os.environ.get('LC_ALL')))); sys.stderr.write('err'); sys.exit(3)"]


def test_arguments_reach_the_command_as_given_with_the_c_locale_and_standard_input():
    rc, out, err = spawn(ECHO + ["$HOME", "~", "a b"], data="text\n")
    # run_command would have expanded $HOME and ~: an interface name or a rule comment may hold either
    assert (rc, out, err) == (3, repr((["$HOME", "~", "a b"], b"text\n", "C")), "err")


def test_bytes_go_to_standard_input_unchanged_and_no_input_is_an_empty_stream():
    assert spawn(ECHO, data=b"\x00\xff")[1] == repr(([], b"\x00\xff", "C"))
    assert spawn(ECHO)[1] == repr(([], b"", "C"))


def test_a_command_that_cannot_start_gives_127_and_says_why(tmp_path):
    rc, out, err = spawn([str(tmp_path / "no-such-command"), "x"])
    assert rc == 127 and out == ""
    assert "cannot run %s" % (tmp_path / "no-such-command") in err and "No such file" in err


def test_a_command_still_running_after_its_timeout_is_killed_and_gives_124():
    rc, out, err = spawn([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert rc == 124 and out == "" and "still running after 0.5 s, killed" in err


def test_env_replaces_the_environment_but_the_locale_stays_c():
    show = [sys.executable, "-c", "import os; print(sorted((k, v) for k, v in os.environ.items() "
            "if k in ('CNI_COMMAND', 'LC_ALL', 'HOME')))"]
    rc, out, _err = spawn(show, env={"CNI_COMMAND": "ADD", "LC_ALL": "de_DE.UTF-8"})
    assert rc == 0 and out.strip() == repr([("CNI_COMMAND", "ADD"), ("LC_ALL", "C")])


class Module(object):
    """What ModuleRunner uses of an AnsibleModule, but run_command, which it must not call."""

    check_mode = False

    def __init__(self):
        self.warnings = []

    def run_command(self, *args, **kwargs):
        raise AssertionError("ModuleRunner ran a command through run_command (a full fork per command)")

    def warn(self, msg):
        self.warnings.append(msg)


@pytest.mark.parametrize("runner", [ModuleRunner(Module()), ProcessRunner()], ids=["module", "process"])
def test_both_runners_run_commands_the_same_way(runner):
    assert runner.run(ECHO + ["x"], data="in") == (3, repr((["x"], b"in", "C")), "err")
