# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The collection's one atomic file writer (module_utils/fileutil.py): symlinks kept, owner, mode and SELinux
context carried over, the directories it made reported."""

from __future__ import annotations

import os
import sys
import types

from ansible_collections.podnet.cluster.plugins.module_utils import fileutil


def test_a_symlink_stays_and_its_target_is_written(tmp_path):
    real = tmp_path / "managed" / "daemon.json"
    real.parent.mkdir()
    real.write_text("{}\n")
    os.chmod(real, 0o600)
    link = tmp_path / "etc" / "daemon.json"
    link.parent.mkdir()
    link.symlink_to(real)
    assert fileutil.atomic_write(str(link), '{"bridge": "cbr0"}\n', mode=0o644, keep_mode=True) == []
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == '{"bridge": "cbr0"}\n'
    assert oct(os.stat(real).st_mode & 0o777) == oct(0o600)
    assert sorted(p.name for p in real.parent.iterdir()) == ["daemon.json"]      # no temporary file left


def test_a_relative_symlink_and_a_dangling_one(tmp_path):
    (tmp_path / "conf").mkdir()
    link = tmp_path / "90-podnet.conf"
    link.symlink_to("conf/90-podnet.conf")             # dangling: the target is made, the link kept
    fileutil.atomic_write(str(link), "a = 1\n")
    assert link.is_symlink() and (tmp_path / "conf" / "90-podnet.conf").read_text() == "a = 1\n"


def test_the_directories_it_made_are_returned(tmp_path):
    made = fileutil.atomic_write(str(tmp_path / "a" / "b" / "f"), "x", create_dirs=True)
    assert made == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    assert fileutil.atomic_write(str(tmp_path / "a" / "b" / "g"), "x", create_dirs=True) == []


def test_the_selinux_context_of_the_replaced_file_is_copied(tmp_path, monkeypatch):
    """Through the python binding when it is there (a stand-in here: this machine has no SELinux)."""
    calls = []
    fake = types.SimpleNamespace(is_selinux_enabled=lambda: 1,
                                 lgetfilecon_raw=lambda p: (0, "system_u:object_r:container_config_t:s0"),
                                 lsetfilecon=lambda p, c: calls.append((os.path.dirname(p), c)))
    monkeypatch.setitem(sys.modules, "selinux", fake)
    target = tmp_path / "daemon.json"
    target.write_text("{}")
    fileutil.atomic_write(str(target), "{}\n")
    assert calls == [(str(tmp_path), "system_u:object_r:container_config_t:s0")]
    calls.clear()
    fileutil.atomic_write(str(tmp_path / "new.json"), "{}\n")     # a new file keeps its directory's default
    assert calls == []


def test_without_selinux_nothing_is_tried(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "selinux", None)             # import fails
    target = tmp_path / "f"
    target.write_text("old")
    assert fileutil.copy_selinux_context(str(target), str(target)) is os.path.exists("/sys/fs/selinux/enforce")
