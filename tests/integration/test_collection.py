# SPDX-License-Identifier: Apache-2.0
"""The collection as users get it: build, documentation of every plugin, argument specs of every role."""

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


def plugin_names(kind: str):
    """Every plugin of a kind that the collection ships, as ansible-doc lists them."""
    proc = subprocess.run([BIN / "ansible-doc", "-t", kind, "-l", "podnet.cluster", "--json"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return sorted(name.split(".", 2)[2] for name in json.loads(proc.stdout))


def plugin_files(kind_dir: str):
    folder = REPO / "plugins" / kind_dir
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


def test_build_has_no_test_or_dev_material(tmp_path):
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    (tarball,) = tmp_path.glob("podnet-cluster-*.tar.gz")
    names = tarfile.open(tarball).getnames()
    assert "MANIFEST.json" in names and "roles/plan/tasks/main.yml" in names
    banned = ("tests/", "molecule/", "bench/", ".venv/", ".collections/", ".ci/", "inventories/lab/")
    assert not [n for n in names if n.startswith(banned)]
    assert not [n for n in names if n.endswith(("podnet_state.yml", ".lock", ".pyc"))]


@pytest.mark.parametrize("kind, folder", [("module", "modules"), ("connection", "connection"),
                                          ("filter", "filter")])
def test_every_plugin_has_documentation(kind, folder):
    names = plugin_names(kind)
    if kind != "filter":
        # A module or connection without parsable documentation is missing from the listing.
        assert names == plugin_files(folder)
    assert names
    for name in names:
        proc = subprocess.run([BIN / "ansible-doc", "-t", kind, "--json", "podnet.cluster.%s" % name],
                              cwd=REPO, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)["podnet.cluster.%s" % name]
        assert doc["doc"].get("short_description"), name
        if kind == "module":
            assert doc.get("examples") and doc.get("return") is not None, name


def test_every_role_has_argument_specs():
    roles = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
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
