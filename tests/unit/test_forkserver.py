# SPDX-License-Identifier: Apache-2.0
"""tests/lib/forkserver.py: a command run by a server gives what the same command run as a process of its own gives
(exit status, standard output and error, environment, configuration, standard input, temporary files), and a
command that runs too long is stopped. Real ``ansible`` and ``ansible-playbook`` runs on localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib import cputime, forkserver
from lib.labtools import wait_until

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """The environment of the commands: Ansible's home (its local temporary directories under ``tmp``) in
    ``tmp_path``; no server of this process left from another test (under xdist, the integration tests' own)."""
    forkserver.shutdown()
    monkeypatch.setattr(forkserver, "START_AFTER", 0)  # a server from the first command on (one test sets it back)
    monkeypatch.delenv(forkserver.ENV_SWITCH, raising=False)
    monkeypatch.delenv("ANSIBLE_LOCAL_TEMP", raising=False)
    yield dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=str(tmp_path / "home"), ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, PYTEST_CURRENT_TEST="first")
    forkserver.shutdown()


def _cmdline(pid: str) -> str:
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def adhoc(*args: str):
    return [str(BIN / "ansible"), "localhost", "-c", "local", *args]


def both(argv, env, monkeypatch, **kwargs):
    """(served, plain) runs of the same command."""
    served = forkserver.run(argv, cwd=REPO, env=env, **kwargs)
    assert forkserver._servers, "no server ran it"  # pylint: disable=protected-access
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    plain = forkserver.run(argv, cwd=REPO, env=env, **kwargs)
    monkeypatch.delenv(forkserver.ENV_SWITCH)
    return served, plain


def test_exit_status_and_both_streams_are_those_of_the_program(env, monkeypatch):
    for argv, code, out, err in (
            (adhoc("-m", "ansible.builtin.command", "-a", "echo hello"), 0, "hello", ""),
            (adhoc("-m", "ansible.builtin.command", "-a", "false"), 2, "non-zero return code", ""),
            ([str(BIN / "ansible"), "no-such-host", "-m", "ansible.builtin.ping"], 0, "",
             "Could not match supplied host pattern")):
        served, plain = both(argv, env, monkeypatch)
        assert (served.returncode, served.stdout, served.stderr) == (plain.returncode, plain.stdout, plain.stderr)
        assert served.returncode == code and out in served.stdout and err in served.stderr, served


def test_the_child_has_the_commands_environment_and_one_server_serves_one_environment(env):
    echo = adhoc("-m", "ansible.builtin.debug", "-a", "msg={{ lookup('env', 'PYTEST_CURRENT_TEST') }}")
    first = forkserver.run(echo, cwd=REPO, env=env)
    second = forkserver.run(echo, cwd=REPO, env=dict(env, PYTEST_CURRENT_TEST="second"))
    assert "msg: first" in first.stdout and "msg: second" in second.stdout, (first.stdout, second.stdout)
    assert len(forkserver._servers) == 1  # pylint: disable=protected-access  # the variable is VOLATILE
    other = forkserver.run(echo, cwd=REPO, env=dict(env, PODNET_SOMETHING="1"))
    assert other.returncode == 0
    assert len(forkserver._servers) == 2  # pylint: disable=protected-access  # read at import, perhaps: a new one


def test_a_changed_configuration_file_gets_a_new_server(env, tmp_path):
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\ncallback_result_format = json\n")
    env = dict(env, ANSIBLE_CONFIG=str(config))
    argv = adhoc("-m", "ansible.builtin.debug", "-a", "msg=hi")
    assert '"msg": "hi"' in forkserver.run(argv, cwd=REPO, env=env).stdout
    config.write_text("[defaults]\ncallback_result_format = yaml\n# longer\n")
    again = forkserver.run(argv, cwd=REPO, env=env).stdout
    assert "msg: hi" in again and '"msg"' not in again, again


def test_each_child_makes_and_removes_its_own_local_temporary_directory(env, tmp_path):
    """Ansible makes its local temporary directory (``ANSIBLE_HOME``/tmp/ansible-local-<pid>...) when it is
    imported: a child makes one of its own, in the same place, and removes it when it ends."""
    local = tmp_path / "home" / "tmp"
    work = tmp_path / "work"
    work.mkdir()
    playbook = tmp_path / "tmp.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  connection: local\n  tasks:\n"
                        "    - ansible.builtin.debug:\n        msg: \"{{ lookup('pipe', 'ls " + str(local) + "') }}\"\n")
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)]
    seen = []
    for _round in range(2):
        proc = forkserver.run(argv, cwd=work, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        seen.append(proc.stdout)
    server = forkserver._servers[forkserver.server_key(argv[0], str(work), env)]  # pylint: disable=protected-access
    left = sorted(p.name for p in local.iterdir())
    assert len(left) == 1 and left[0].startswith("ansible-local-%d" % server.proc.pid), left  # the server's own
    for out in seen:  # while it ran, each child had a directory of its own beside the server's
        assert out.count("ansible-local-") == 2, out
    assert seen[0] != seen[1]
    assert not list(work.iterdir())  # nothing made where the command ran
    forkserver.shutdown()
    assert not list(local.iterdir())


def test_standard_input_and_cpu_are_passed_on(env, tmp_path):
    playbook = "- hosts: localhost\n  gather_facts: false\n  connection: local\n  tasks:\n" \
               "    - ansible.builtin.debug:\n        msg: from standard input\n"
    before = cputime.children_cpu()
    proc = forkserver.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "/dev/stdin"], cwd=REPO, env=env,
                          input=playbook)
    assert proc.returncode == 0 and "from standard input" in proc.stdout, proc.stdout + proc.stderr
    assert cputime.children_cpu() - before > 0.05  # the served run's CPU counts as this process's children's


def test_a_command_that_runs_too_long_is_stopped(env, tmp_path):
    """With everything it started: Ansible's worker (in a session of its own) and the module's ``sleep``. The
    killed module cannot remove its AnsiballZ payload folder, so its temporary directory is the test's own."""
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir()
    with pytest.raises(subprocess.TimeoutExpired):
        forkserver.run(adhoc("-m", "ansible.builtin.command", "-a", "sleep 61.5"), cwd=REPO,
                       env=dict(env, TMPDIR=str(module_tmp)), timeout=5)
    assert [p.name for p in module_tmp.iterdir() if p.name.startswith("ansible_")], \
        "the module ran with another temporary directory than the test's (its payload would be left there)"
    # a killed process is gone once the kernel has run its exit: allow that 5 s
    wait_until(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == "sleep 61.5"], 5,
               "the command's sleep 61.5 is still running")
    proc = forkserver.run(adhoc("-m", "ansible.builtin.ping"), cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr


def test_a_server_starts_for_the_second_command_of_an_environment(env, monkeypatch):
    monkeypatch.setattr(forkserver, "START_AFTER", 1)
    argv = adhoc("-m", "ansible.builtin.ping")
    once = dict(env, PODNET_ONE_OFF="1")
    assert forkserver.run(argv, cwd=REPO, env=once).returncode == 0
    assert not forkserver._servers  # pylint: disable=protected-access
    assert forkserver.run(argv, cwd=REPO, env=once).returncode == 0
    assert len(forkserver._servers) == 1  # pylint: disable=protected-access
    assert forkserver.run(argv, cwd=REPO, env=once).returncode == 0
    assert len(forkserver._servers) == 1  # pylint: disable=protected-access


def test_switched_off_or_another_program_runs_as_a_plain_process(env, monkeypatch):
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    assert forkserver.run(adhoc("-m", "ansible.builtin.ping"), cwd=REPO, env=env).returncode == 0
    monkeypatch.delenv(forkserver.ENV_SWITCH)
    assert forkserver.run(["/bin/sh", "-c", "echo plain"], cwd=REPO, env=env).stdout == "plain\n"
    assert not forkserver._servers  # pylint: disable=protected-access


MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tst.one.plugins.module_utils.word import WORD
DOCUMENTATION = "module: hello"
AnsibleModule(argument_spec={}).exit_json(changed=False, word=WORD)
'''


def collection(base: Path, word: str) -> Path:
    """A collection tst.one on ``base`` whose module hello returns ``word`` (from a module utility)."""
    top = base / "ansible_collections" / "tst" / "one"
    (top / "plugins" / "modules").mkdir(parents=True, exist_ok=True)
    (top / "plugins" / "module_utils").mkdir(parents=True, exist_ok=True)
    (top / "galaxy.yml").write_text("namespace: tst\nname: one\nversion: 1.0.0\nreadme: README.md\nauthors: [x]\n")
    (top / "plugins" / "modules" / "hello.py").write_text(MODULE)
    (top / "plugins" / "module_utils" / "word.py").write_text("WORD = %r\n" % word)
    return top / "plugins" / "module_utils" / "word.py"


def test_a_later_run_takes_a_modules_zip_from_an_earlier_one_while_its_sources_are_unchanged(env, tmp_path):
    """Every run says (ANSIBLE_DEBUG) whether it built a module's zip or took it from the cache."""
    word = collection(tmp_path / "collections", "one")
    env = dict(env, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_DEBUG="1")
    argv = adhoc("-m", "tst.one.hello")
    runs = []
    for change in (None, None, "two", None, "three-three"):
        if change:
            word.write_text("WORD = %r\n" % change)
        runs.append(forkserver.run(argv, cwd=REPO, env=env))
        assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr
    built = ["ANSIBALLZ: Creating module" in r.stdout + r.stderr for r in runs]
    taken = ["ANSIBALLZ: using cached module" in r.stdout + r.stderr for r in runs]
    words = [r.stdout.split("word: ")[1].split()[0] for r in runs]
    assert words == ["one", "one", "two", "two", "three-three"], words
    assert built == [True, False, True, False, True] and taken == [not b for b in built], (built, taken)
    assert len(forkserver._servers) == 1  # pylint: disable=protected-access  # one server saw every change


def test_a_module_from_outside_the_collection_path_is_built_by_every_run(env, tmp_path):
    """A module in ANSIBLE_LIBRARY changed between two runs of the same server, in the same second, size and all:
    the second run runs the new one. So does a collection beside the playbook (the collection path has another)."""
    library = tmp_path / "library"
    library.mkdir()
    legacy = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
AnsibleModule(argument_spec={}).exit_json(changed=False, word=%r)
'''
    env = dict(env, ANSIBLE_LIBRARY=str(library), ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"))
    collection(tmp_path / "collections", "path")
    words = []
    for word in ("aaa", "bbb"):
        (library / "hello_legacy.py").write_text(legacy % word)
        run = forkserver.run(adhoc("-m", "hello_legacy"), cwd=REPO, env=env)
        words.append(run.stdout.split("word: ")[1].split()[0] if "word: " in run.stdout else run.stdout)
    assert words == ["aaa", "bbb"], words
    plays = {}
    for name, word in (("beside", "beside"), ("plain", None), ("beside-again", "beside")):
        folder = tmp_path / name
        if word:
            collection(folder / "collections", word)
        else:
            folder.mkdir()
        (folder / "play.yml").write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                                         "    - tst.one.hello:\n      register: r\n    - debug: {var: r.word}\n")
        run = forkserver.run([str(BIN / "ansible-playbook"), str(folder / "play.yml")], cwd=REPO, env=env)
        plays[name] = run.stdout.split("r.word: ")[1].split()[0] if "r.word: " in run.stdout else run.stdout
    assert plays == {"beside": "beside", "plain": "path", "beside-again": "beside"}, plays
    assert len(forkserver._servers) == 2  # pylint: disable=protected-access  # ansible's and ansible-playbook's
