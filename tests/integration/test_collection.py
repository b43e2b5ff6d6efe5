# SPDX-License-Identifier: Apache-2.0
"""The collections as users get them (podnet.cluster, and podnet.lab from lab/): build, documentation of every
plugin, argument specs of every role."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


ROOTS = {"podnet.cluster": REPO, "podnet.lab": REPO / "lab"}  # podnet.lab: the lab, a collection of its own
# What only podnet.lab may hold: podnet.cluster's tarball has none of it (verify and its probes stay there).
LAB_FILES = ("roles/lab/", "playbooks/lab.yml", "plugins/modules/lab_topology.py",
             "plugins/module_utils/lab_topology.py", "plugins/module_utils/netns.py", "plugins/connection/netns.py",
             "plugins/filter/lab.py", "plugins/filter/lab_input_errors.yml", "docs/lab.md")


def plugin_names(collection: str, kind: str):
    """Every plugin of a kind that a collection ships, as ansible-doc lists them."""
    proc = subprocess.run([BIN / "ansible-doc", "-t", kind, "-l", collection, "--json"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return sorted(name.split(".", 2)[2] for name in json.loads(proc.stdout))


def plugin_files(collection: str, kind_dir: str):
    folder = ROOTS[collection] / "plugins" / kind_dir
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


def build(collection: str, out: Path):
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", str(out),
                    str(ROOTS[collection])], cwd=REPO, check=True, capture_output=True, text=True)
    (tarball,) = out.glob("%s-*.tar.gz" % collection.replace(".", "-"))
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        return tar.getnames(), manifest


def test_build_has_no_test_dev_or_lab_material(tmp_path):
    names = build("podnet.cluster", tmp_path)[0]
    assert "MANIFEST.json" in names and "roles/plan/tasks/main.yml" in names
    assert "roles/verify/tasks/main.yml" in names and "plugins/modules/probe_pod.py" in names
    banned = ("tests/", "molecule/", "bench/", ".venv/", ".collections/", ".ci/", "inventories/lab/", "lab/")
    assert not [n for n in names if n.startswith(banned)]
    assert not [n for n in names if n.startswith(LAB_FILES + ("plugins/connection/",)) or n == "roles/lab"]
    assert not [n for n in names if n.endswith(("podnet_state.yml", ".lock", ".pyc"))]


def test_the_lab_builds_on_its_own(tmp_path):
    names, manifest = build("podnet.lab", tmp_path)
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"]) == ("podnet", "lab")
    assert info["dependencies"] == {"podnet.cluster": ">=0.2.0"}
    for wanted in LAB_FILES:
        assert [n for n in names if n.startswith(wanted)], wanted
    assert "README.md" in names and "meta/runtime.yml" in names
    # nothing of podnet.cluster's own: no other role, playbook or plugin, no tests
    assert sorted(n for n in names if n.startswith(("roles/", "playbooks/")) and n.count("/") == 1) == [
        "playbooks/lab.yml", "roles/lab"]
    assert not [n for n in names if n.startswith(("tests/", "plugins/action/", "plugins/plugin_utils/"))]


def test_the_old_lab_names_point_to_podnet_lab():
    proc = subprocess.run([BIN / "ansible", "localhost", "-m", "podnet.cluster.lab_topology"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "podnet.lab.lab_topology" in " ".join((proc.stdout + proc.stderr).split())


@pytest.mark.parametrize("collection, kind, folder", [
    ("podnet.cluster", "module", "modules"), ("podnet.cluster", "filter", "filter"),
    ("podnet.lab", "module", "modules"), ("podnet.lab", "connection", "connection"), ("podnet.lab", "filter", "filter")])
def test_every_plugin_has_documentation(collection, kind, folder):
    names = plugin_names(collection, kind)
    if kind != "filter":
        # A module or connection without parsable documentation is missing from the listing.
        assert names == plugin_files(collection, folder)
    assert names
    # one ansible-doc for every plugin of the kind: a plugin whose documentation does not load is missing from its
    # output (and makes it fail)
    fqcns = ["%s.%s" % (collection, name) for name in names]
    proc = subprocess.run([BIN / "ansible-doc", "-t", kind, "--json", *fqcns],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(docs) == sorted(fqcns), proc.stderr
    for name, fqcn in zip(names, fqcns):
        doc = docs[fqcn]
        assert doc["doc"].get("short_description"), name
        if kind == "module":
            assert doc.get("examples") and doc.get("return") is not None, name


def test_podnet_cluster_has_no_connection_plugin():
    assert plugin_names("podnet.cluster", "connection") == []


def test_every_role_has_argument_specs():
    roles = sorted(p for root in ROOTS.values() for p in (root / "roles").iterdir() if p.is_dir())
    assert roles
    for role in roles:
        spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
        assert spec["argument_specs"]["main"]["options"], role.name
        defaults = role / "defaults" / "main.yml"
        if defaults.exists():
            for var in yaml.safe_load(defaults.read_text()) or {}:
                assert var.startswith(("podnet_", "__podnet_")), (role.name, var)
                if not var.startswith("__"):
                    assert var in spec["argument_specs"]["main"]["options"], (role.name, var)
