# SPDX-License-Identifier: Apache-2.0
"""Every molecule scenario, end to end: create (the lab), converge, idempotence, verify, destroy.

The test asserts the outcome, not words in the output (see lib/molecule_output.py): every step of the
scenario's test_sequence ran in order and succeeded; the converge recapped every platform without a
failure and changed every platform; the idempotence run recapped every platform with changed=0; testinfra
passed exactly the scenario's tests and nothing else; every role task file came from this checkout; and
after the destroy nothing of the lab is left (namespaces, its directory, the inventory, molecule's state).
molecule's prerun (which builds the collection and installs the copy into ~/.ansible/collections, shared by
every checkout on the machine) is off in the scenarios, and the collection path is this checkout's.

One ``molecule test`` per scenario, without a leading destroy in its test_sequence: a former run's leftovers
(a run killed before its destroy) are found here and removed with ``molecule destroy`` first, only when there
are any. molecule keeps its state (``created``) in a directory of its own per scenario, set here
(MOLECULE_EPHEMERAL_DIRECTORY), so that a stale ``created: true`` is seen too (molecule would skip create).

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


# what a scenario's lab leaves in its inventory folder (the rest, .gitkeep, is the checkout's)
INVENTORY_LEFTOVERS = ("hosts.yml", ".podnet_state.yml", ".podnet_state.yml.lock", "gce-standin/pid")


def leftovers(scenario: str, ephemeral: Path) -> list:
    """What of the scenario's lab exists now: its namespaces and directory (machine-wide: the lab name is the same
    in every checkout), its inventory and plan (this checkout's), molecule's state saying it was created."""
    lab = yaml.safe_load((REPO / "molecule" / scenario / "vars" / "lab.yml").read_text())
    name = lab["podnet_lab_name"]
    root = Path(lab.get("podnet_lab_root", "/var/tmp/podnet-lab/%s" % name))
    found = [str(p) for p in sorted(Path("/run/netns").glob(name + "-*"))]
    found += [str(root)] if root.exists() else []
    inventory = REPO / "molecule" / scenario / "inventory"
    found += [str(inventory / f) for f in INVENTORY_LEFTOVERS if (inventory / f).exists()]
    state = ephemeral / "state.yml"
    if state.exists() and (yaml.safe_load(state.read_text()) or {}).get("created"):
        found.append("%s (created: true)" % state)
    return found


def molecule(bin_dir: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    # one stream: molecule logs its steps on stderr, the playbooks print on stdout, in between
    return subprocess.run([os.path.join(bin_dir, "molecule"), *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1800, check=False)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    config = yaml.safe_load((REPO / "molecule" / scenario / "molecule.yml").read_text())
    assert config.get("prerun") is False, "prerun would run a built copy of the collection, not this checkout"
    bin_dir = str(Path(sys.executable).parent)
    # molecule's own folder of the scenario (state, generated inventory): one per scenario on the machine, like
    # the lab and the lock
    ephemeral = Path("/var/tmp/podnet-molecule-%s" % scenario)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_COLOR="1", MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral))
    with open("/var/tmp/podnet-molecule-%s.lock" % scenario, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        left = leftovers(scenario, ephemeral)
        if left:  # a former run was killed before its destroy: remove what it left, as a leading destroy would
            cleanup = molecule(bin_dir, env, "destroy", "-s", scenario)
            assert cleanup.returncode == 0, "leftovers %s; molecule destroy failed:\n%s" % (
                left, cleanup.stdout[-20000:])
            assert leftovers(scenario, ephemeral) == [], "molecule destroy left %s" % leftovers(scenario, ephemeral)
            print("%s: a former run left %s; molecule destroy removed it" % (scenario, ", ".join(left)))
        proc = molecule(bin_dir, env, "test", "-s", scenario)
        left = leftovers(scenario, ephemeral)
    output = proc.stdout
    assert proc.returncode == 0, output[-20000:]
    assert left == [], "after the scenario's destroy, the lab is still there: %s\n%s" % (left, output[-8000:])
    tests_dir = REPO / "molecule" / scenario / config.get("verifier", {}).get("directory", "tests")
    found = problems(output, scenario, config["scenario"]["test_sequence"],
                     [p["name"] for p in config["platforms"]], count_tests(tests_dir), REPO)
    assert found == [], "\n".join(found) + "\n\n" + output[-20000:]
