# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""File planning of the node engine (module_utils/engine/files.py): which directories podnet.cluster created go."""

from __future__ import annotations

import py_compile

from ansible_collections.podnet.cluster.plugins.module_utils.engine.files import (
    apply_dirs,
    compiled_forms,
    plan_compiled_removal,
    plan_dirs,
)


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


def test_the_compiled_forms_of_a_python_file_are_its_own_pyc_only(tmp_path):
    source = tmp_path / "iproute.py"
    source.write_text("X = 1\n")
    compiled = py_compile.compile(str(source), doraise=True)  # __pycache__/iproute.cpython-3X.pyc
    (tmp_path / "__pycache__" / "iproute_extra.cpython-311.pyc").write_bytes(b"theirs")  # another module's
    (tmp_path / "__pycache__" / "iproute.notes").write_text("theirs")
    assert compiled_forms(str(source)) == [compiled]
    assert compiled_forms(str(tmp_path / "podnet-restore")) == []
    assert compiled_forms(str(tmp_path / "nowhere" / "x.py")) == []
    change = plan_compiled_removal(compiled)
    assert change["changed"] and change["content"] is None
    assert change["diff"]["before"].startswith("(compiled Python, ") and change["diff"]["after"] == ""
    assert not plan_compiled_removal(str(tmp_path / "__pycache__" / "gone.cpython-311.pyc"))["changed"]
