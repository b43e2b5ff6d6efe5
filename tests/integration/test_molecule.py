# SPDX-License-Identifier: Apache-2.0
"""Every molecule scenario, end to end: create (the lab), check, converge, idempotence, verify, destroy.

The test asserts the outcome, not words in the output (see lib/molecule_output.py): every step of the
scenario's test_sequence ran in order and succeeded; check and converge recapped every platform without a
failure, and the converge changed every platform; the idempotence run recapped every platform with
changed=0; testinfra passed exactly the scenario's tests and nothing else; and every role task file came
from this checkout. molecule's prerun (which builds the collection and installs the copy into
~/.ansible/collections, shared by every checkout on the machine) is off in the scenarios, and the
collection path is this checkout's.

Scenarios run in parallel with each other and with the rest of the suite (each builds its own lab, named in its
vars/lab.yml); the same scenario never runs twice at once on this machine, from any checkout: its lab name and
molecule's directory for it are the same in every checkout, so a file lock per scenario keeps them apart.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lib.molecule_output import count_tests, problems

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    config = yaml.safe_load((REPO / "molecule" / scenario / "molecule.yml").read_text())
    assert config.get("prerun") is False, "prerun would run a built copy of the collection, not this checkout"
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_COLOR="1")
    # one stream: molecule logs its steps on stderr, the playbooks print on stdout, in between
    with open("/var/tmp/podnet-molecule-%s.lock" % scenario, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([os.path.join(bin_dir, "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800,
                              check=False)
    output = proc.stdout
    assert proc.returncode == 0, output[-20000:]
    tests_dir = REPO / "molecule" / scenario / config.get("verifier", {}).get("directory", "tests")
    found = problems(output, scenario, config["scenario"]["test_sequence"],
                     [p["name"] for p in config["platforms"]], count_tests(tests_dir), REPO)
    assert found == [], "\n".join(found) + "\n\n" + output[-20000:]
