# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The suite's CPU record (tests/lib/cputime.py): reading the per-worker files and summing them by module."""

from __future__ import annotations

from lib import cputime
from lib.cputime import by_module, main, read, read_runs, report, run_kind, runs_report


def _record(tmp_path):
    (tmp_path / "gw0.tsv").write_text("tests/integration/test_a.py::test_one\t10.00\t12.50\n"
                                      "tests/unit/test_u.py::test_x\t0.10\t0.20\n", encoding="utf-8")
    (tmp_path / "gw1.tsv").write_text("tests/integration/test_a.py::test_two[p::q]\t5.00\t7.50\n"
                                      "tests/integration/test_b.py::test_three\t30.00\t4.00\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a record\n", encoding="utf-8")


def test_read_takes_every_worker_file_and_keeps_ids_with_separators(tmp_path):
    _record(tmp_path)
    rows = read(tmp_path)
    assert len(rows) == 4
    assert ("tests/integration/test_a.py::test_two[p::q]", 5.0, 7.5) in rows


def test_modules_are_summed_and_the_most_cpu_comes_first(tmp_path):
    _record(tmp_path)
    assert by_module(read(tmp_path)) == [("tests/integration/test_a.py", 2, 15.0, 20.0),
                                         ("tests/integration/test_b.py", 1, 30.0, 4.0),
                                         ("tests/unit/test_u.py", 1, 0.1, 0.2)]


def test_report_shows_shares_the_rest_and_the_total(tmp_path, capsys):
    _record(tmp_path)
    lines = report(read(tmp_path), shown=1)
    assert "tests/integration/test_a.py" in lines[1] and "82.6%" in lines[1]
    assert "(2 more modules)" in lines[2] and lines[2].split()[0] == "4"
    assert lines[-1].split()[0] == "24" and "0.4 CPU-minutes" in lines[-1]
    main([str(tmp_path), "--tests", "1"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].split()[:2] == ["12.5", "10.0"] and printed[-1].endswith("test_a.py::test_one")


def test_what_ran_is_the_program_and_its_playbook_or_module():
    assert run_kind(["/x/.venv/bin/ansible-playbook", "podnet.cluster.site", "-i", "h.yml"]) == \
        "ansible-playbook podnet.cluster.site"
    assert run_kind(["/x/bin/ansible-playbook", "-e", "{}", "/t/play.yml"]) == "ansible-playbook play.yml"
    assert run_kind(["/x/bin/ansible", "-i", "h.yml", "all", "-m", "command", "-a", "ip r"]) == "ansible -m command"
    assert run_kind(["/x/bin/ansible-doc", "-l"]) == "ansible-doc"


def test_commands_are_recorded_per_worker_and_summed_by_what_ran(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cputime, "CPU_DIR", tmp_path)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    cputime.record_run(["ansible-playbook", "podnet.cluster.site"], 3.0, 4.5)  # outside a test: not recorded
    assert read_runs(tmp_path) == []
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/integration/test_a.py::test_one (call)")
    cputime.record_run(["ansible-playbook", "podnet.cluster.site"], 3.0, 4.5)
    cputime.record_run(["ansible-playbook", "podnet.cluster.site"], 2.0, 3.5)
    cputime.record_run(["ansible-playbook", "podnet.lab.lab"], 1.0, 2.0)
    assert read_runs(tmp_path)[0] == ("tests/integration/test_a.py::test_one", "ansible-playbook podnet.cluster.site",
                                      3.0, 4.5)
    lines = runs_report(read_runs(tmp_path), 20.0)
    assert lines[1].split() == ["8", "40.0%", "2", "4.00", "ansible-playbook", "podnet.cluster.site"]
    assert lines[2].split()[:4] == ["2", "10.0%", "1", "2.00"]
    _record(tmp_path)
    main([str(tmp_path), "--runs"])
    assert capsys.readouterr().out.splitlines()[-1].endswith("ansible-playbook podnet.lab.lab")
