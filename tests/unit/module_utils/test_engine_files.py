# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""File planning of the node engine (module_utils/engine/files.py): which directories podnet.cluster created go."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.module_utils.engine.files import apply_dirs, plan_dirs


def test_empty_created_directories_go_deepest_first(tmp_path):
    outer = tmp_path / "cni"
    inner = outer / "net.d"
    inner.mkdir(parents=True)
    (inner / "10-podnet.conflist").write_text("{}")
    change = plan_dirs([str(inner), str(outer)], removing=[str(inner / "10-podnet.conflist")])
    assert change["changed"] and change["directories"] == [str(inner), str(outer)]
    (inner / "10-podnet.conflist").unlink()
    apply_dirs(change)
    assert not outer.exists()


def test_a_directory_whose_file_is_written_again_stays(tmp_path):
    # the conflist was deleted by hand: this run writes it again, so its directory is no change
    inner = tmp_path / "cni" / "net.d"
    inner.mkdir(parents=True)
    change = plan_dirs([str(inner), str(inner.parent)], keeping=[str(inner / "10-podnet.conflist")])
    assert not change["changed"] and change["directories"] == []
    assert change["diff"]["before"] == ""


def test_a_directory_with_a_foreign_file_stays(tmp_path):
    inner = tmp_path / "net.d"
    inner.mkdir()
    (inner / "99-theirs.conflist").write_text("{}")
    assert plan_dirs([str(inner)])["directories"] == []
