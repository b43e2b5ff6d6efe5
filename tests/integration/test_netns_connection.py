# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The netns connection on a namespace made by hand (``ip netns add``), as a new user would write it: an
inventory with no ``podnet_netns_root``. What a task writes to /etc, /var/lib or /run must land in the node's
own layer (the default per-node root /var/tmp/podnet-netns/<name>), never in the machine's files; and a node
whose layers cannot be set up is refused, the command not run.

The namespace ``pnc<pytest pid>-hand`` is made by the test and deleted by name; so are its default root and
the test's marker files (named after the pid), wherever a broken connection may have put them. Namespaces of
earlier killed runs are removed first.
"""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import types
from pathlib import Path

import pytest
import yaml

from lib.labtools import BIN, REPO, recap, remove_stale_namespaces, run

PREFIX = "pnc"
DEFAULT_ROOT_BASE = Path("/var/tmp/podnet-netns")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture()
def hand_ns():
    remove_stale_namespaces(PREFIX)
    name = "%s%d-hand" % (PREFIX, os.getpid())
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", name], check=True)
    markers = [Path("/etc/podnet-hand-%d" % os.getpid()), Path("/var/lib/podnet-hand-%d" % os.getpid()),
               Path("/run/podnet-hand-%d" % os.getpid())]
    try:
        yield name, markers
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        for marker in markers:  # only ever our own, uniquely named files
            if marker.exists():
                marker.unlink()
        shutil.rmtree(DEFAULT_ROOT_BASE / name, ignore_errors=True)
        try:
            DEFAULT_ROOT_BASE.rmdir()  # only when no other node's layers are there
        except OSError:
            pass


def write_inventory(path: Path, host_vars: dict) -> Path:
    path.write_text(yaml.safe_dump({"all": {"hosts": {"hand": dict({
        "ansible_connection": "podnet.lab.netns",
        "ansible_python_interpreter": "/usr/bin/python3",
    }, **host_vars)}}}))
    return path


def playbook(tmp_path: Path, markers) -> Path:
    tasks = [{"name": "write %s" % m, "ansible.builtin.copy": {"dest": str(m), "content": "node file\n",
                                                               "mode": "0644"}} for m in markers]
    tasks.append({"name": "read them back", "ansible.builtin.command": "cat %s" % " ".join(map(str, markers)),
                  "register": "back", "changed_when": False})
    tasks.append({"name": "the node sees its own files", "ansible.builtin.assert": {
        "that": ["back.stdout_lines == ['node file'] * %d" % len(markers)]}})
    tasks.append({"name": "host name", "ansible.builtin.command": "hostname", "register": "name",
                  "changed_when": False})
    play = tmp_path / "write.yml"
    play.write_text(yaml.safe_dump([{"name": "Write on a hand-made node", "hosts": "hand", "gather_facts": False,
                                     "tasks": tasks}]))
    return play


def test_writes_on_a_hand_made_namespace_stay_on_the_node(hand_ns, tmp_path):
    name, markers = hand_ns
    inv = write_inventory(tmp_path / "hand.yml", {"podnet_netns": name})
    proc = run([str(BIN / "ansible-playbook"), "-i", str(inv), str(playbook(tmp_path, markers))], check=False)
    reached = [str(m) for m in markers if m.exists()]
    assert reached == [], "the node wrote the machine's own files: %s" % reached
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert recap(proc.stdout)["hand"]["failed"] == 0
    root = DEFAULT_ROOT_BASE / name
    for marker, layer in zip(markers, ("etc", "var-lib", "run")):
        assert (root / "upper" / layer / marker.name).read_text() == "node file\n"
    # a second run finds its files again (the layer is the node's, not the command's)
    again = run([str(BIN / "ansible"), "-i", str(inv), "hand", "-m", "command", "-a", "cat %s" % markers[0]],
                check=False)
    assert again.returncode == 0 and "node file" in again.stdout, again.stdout


def test_a_node_whose_layers_cannot_be_set_up_is_refused(hand_ns, tmp_path):
    name, markers = hand_ns
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    inv = write_inventory(tmp_path / "hand.yml", {"podnet_netns": name, "podnet_netns_root": str(blocker)})
    proc = run([str(BIN / "ansible"), "-i", str(inv), "hand", "-m", "command", "-a", "touch %s" % markers[0]],
               check=False)
    assert proc.returncode != 0 and "UNREACHABLE" in proc.stdout, proc.stdout
    assert "cannot set up the node's view" in proc.stdout
    assert not markers[0].exists()


def cache_entries(cache: Path) -> dict:
    return {p.relative_to(cache).as_posix(): p.read_bytes() for p in cache.rglob("*")
            if p.is_file() and (cache / "hook") not in p.parents}


def test_the_code_cache_keeps_what_a_module_call_compiled_for_the_next_one(hand_ns, tmp_path):
    """With podnet_netns_code_cache, the node's Python keeps the code it compiled from the module's zip: the first
    call writes an entry per imported file, the second call writes none, and a damaged entry is written again.
    Without the option (the test above) the hook is never put on the command's PYTHONPATH."""
    name, _markers = hand_ns
    cache = tmp_path / "code-cache"
    inv = write_inventory(tmp_path / "hand.yml", {"podnet_netns": name, "podnet_netns_code_cache": str(cache)})
    argv = [str(BIN / "ansible"), "-i", str(inv), "hand", "-m", "ansible.builtin.ping"]
    first = run(argv + ["-vvv"], check=False)
    assert first.returncode == 0 and "pong" in first.stdout, first.stdout[-4000:]
    assert "EXEC PYTHONPATH=%s/hook " % cache in first.stdout
    hook = cache / "hook" / "sitecustomize.py"
    assert hook.read_bytes() == (REPO / "lab" / "plugins" / "module_utils" / "code_cache.py").read_bytes()
    assert list((cache / "hook" / "__pycache__").glob("sitecustomize.*.pyc")), "the hook's bytecode is missing"
    written = cache_entries(cache)
    # ping imports ansible.module_utils.basic and what it needs: dozens of files of the zip
    assert len(written) > 20, sorted(written)
    second = run(argv, check=False)
    assert second.returncode == 0 and "pong" in second.stdout, second.stdout[-4000:]
    assert cache_entries(cache) == written
    damaged = sorted(written)[0]
    (cache / damaged).write_bytes(b"damaged")
    third = run(argv, check=False)
    assert third.returncode == 0 and "pong" in third.stdout, third.stdout[-4000:]
    again = cache_entries(cache)
    assert set(again) == set(written)
    assert {k: v for k, v in again.items() if k != damaged} == {k: v for k, v in written.items() if k != damaged}
    # compiled again: code once more (its file name is the third call's zip)
    assert isinstance(marshal.loads(again[damaged]), types.CodeType)


def test_a_code_cache_that_is_not_an_absolute_path_is_refused(hand_ns, tmp_path):
    name, markers = hand_ns
    inv = write_inventory(tmp_path / "hand.yml", {"podnet_netns": name, "podnet_netns_code_cache": "cache:dir"})
    proc = run([str(BIN / "ansible"), "-i", str(inv), "hand", "-m", "command", "-a", "touch %s" % markers[0]],
               check=False)
    assert proc.returncode != 0 and "podnet_netns_code_cache" in proc.stdout, proc.stdout
    assert not markers[0].exists()


def test_a_command_on_the_node_gets_a_logins_environment_not_the_controllers(hand_ns, tmp_path):
    """As over SSH: the node sees PATH, HOME, USER and the locale, never the variables of the shell that runs
    Ansible (with PYTHONUNBUFFERED=1 the node's Python would read each module one byte per system call)."""
    inv = write_inventory(tmp_path / "hand.yml", {"podnet_netns": hand_ns[0]})
    proc = run([str(BIN / "ansible"), "-i", str(inv), "hand", "-m", "ansible.builtin.command", "-a", "env"],
               check=False, PYTHONUNBUFFERED="1", PYTHONPATH=str(tmp_path), PODNET_ONLY_ON_THE_CONTROLLER="yes",
               VIRTUAL_ENV=str(tmp_path), LC_TIME="C.UTF-8")
    assert proc.returncode == 0, proc.stdout
    seen = dict(line.split("=", 1) for line in proc.stdout.splitlines()[1:] if "=" in line)
    for name in ("PYTHONUNBUFFERED", "PYTHONPATH", "PODNET_ONLY_ON_THE_CONTROLLER", "VIRTUAL_ENV"):
        assert name not in seen, (name, seen)
    assert seen["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", seen
    assert seen["LC_TIME"] == "C.UTF-8" and seen["HOME"] and seen["USER"] == seen["LOGNAME"], seen
