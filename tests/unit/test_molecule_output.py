# SPDX-License-Identifier: Apache-2.0
"""The checker of molecule's output (tests/lib/molecule_output.py) finds each broken outcome it claims to."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.molecule_output import count_tests, problems, recap, steps

CHECKOUT = Path("/work/checkout")
HOSTS = ["n1", "n2"]
SEQUENCE = ["destroy", "create", "converge", "idempotence", "verify", "destroy"]


def play(step, changed, failed=(0, 0)):
    lines = ["INFO     [s1 > %s] Executing" % step,
             "TASK [podnet.lab.lab : Check the lab inputs] ***",
             "included: /work/checkout/.collections/ansible_collections/podnet/lab/roles/lab/tasks/x.yml for "
             "localhost",
             "PLAY RECAP *********************************************************************"]
    for host, ch, fl in zip(HOSTS, changed, failed):
        lines.append("%-26s : ok=9    changed=%d    unreachable=0    failed=%d    skipped=1    rescued=0    "
                     "ignored=0" % (host, ch, fl))
    lines += ["", "INFO     [s1 > %s] Executed: Successful" % step]
    return lines


def output(idempotent=(0, 0), summary="8 passed in 17.07s", converge=(7, 8), sequence=None,
           include="/work/checkout/.collections/ansible_collections/podnet/lab"):
    sequence = SEQUENCE if sequence is None else sequence
    lines = ["INFO     [s1 > prerun] Performing prerun..."]
    for step in sequence:
        if step == "converge":
            lines += play(step, converge)
        elif step == "idempotence":
            lines += play(step, idempotent)
        elif step == "verify":
            lines += ["INFO     [s1 > verify] Executing", "tests/test_a.py ....", "",
                      "============================== %s ==============================" % summary,
                      "INFO     [s1 > verify] Executed: Successful"]
        else:
            lines += ["INFO     [s1 > %s] Executing" % step,
                      "included: %s/roles/lab/tasks/absent.yml for localhost" % include,
                      "INFO     [s1 > %s] Executed: Successful" % step]
    return "\n".join(lines) + "\n"


def check(text, tests=8):
    return problems(text, "s1", SEQUENCE, HOSTS, tests, CHECKOUT)


@pytest.fixture(autouse=True)
def _checkout(monkeypatch):
    # Path.resolve() of the fake checkout: no symlinks to follow there
    monkeypatch.setattr(Path, "resolve", lambda self, strict=False: Path(str(self)))


def test_a_good_run_has_no_problem():
    assert check(output()) == []
    assert [s["step"] for s in steps(output(), "s1")] == SEQUENCE
    assert recap(steps(output(), "s1")[3]["text"]) == {
        "n1": {"ok": 9, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 1, "rescued": 0, "ignored": 0},
        "n2": {"ok": 9, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 1, "rescued": 0, "ignored": 0}}


def test_a_change_in_the_idempotence_run_is_found():
    assert check(output(idempotent=(0, 1))) == [
        "idempotence: n2 changed=1 (a second converge must change nothing)"]


def test_a_converge_that_changed_nothing_is_found():
    assert check(output(converge=(0, 3))) == ["converge: n1 changed=0 (a converge of a fresh lab must change it)"]


@pytest.mark.parametrize("summary, expected", [
    ("7 passed, 1 failed in 3.00s", ["verify: 7 tests passed, the scenario has 8", "verify: 1 failed"]),
    ("8 passed, 1 skipped in 3.00s", ["verify: 1 skipped"]),
    ("no tests ran in 0.01s", ["verify: 0 tests passed, the scenario has 8"]),
    ("8 passed, 1 error in 1.00s", ["verify: 1 error"]),
    ("8 passed, 2 warnings in 1.00s", []),
])
def test_verify_must_pass_exactly_the_scenario_tests(summary, expected):
    assert check(output(summary=summary)) == expected


def test_a_missing_step_or_host_is_found():
    short = [s for s in SEQUENCE if s != "idempotence"]
    found = check(output(sequence=short))
    assert found and "test_sequence" in found[0]
    text = output().replace("n2                         : ok=9    changed=0", "n3                         : ok=9    changed=0")
    assert "idempotence: no recap for n2" in check(text)


def test_roles_from_another_copy_of_the_collection_are_found():
    found = check(output(include="/root/.ansible/collections/ansible_collections/podnet/lab"))
    assert found == ["role task files from outside this checkout (/work/checkout): "
                     "/root/.ansible/collections/ansible_collections/podnet/lab/roles/lab/tasks/absent.yml"]


def test_count_tests(tmp_path):
    (tmp_path / "test_a.py").write_text("def test_one():\n    pass\n\ndef helper():\n    pass\n\n"
                                        "def test_two(host):\n    pass\n")
    (tmp_path / "conftest.py").write_text("def test_not_counted():\n    pass\n")
    assert count_tests(tmp_path) == 2
