# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""version_added of every module, filter and connection, and of their options, agrees with the changelog.

The versions are those of changelogs/changelog.yaml and galaxy.yml's (the one in development). What 0.1.0
held, plugins and their options, is tests/unit/data/plugins-0.1.0.json (read from the last commit of 0.1.0):
a plugin or option it lists says 0.1.0 (or nothing, for an option); anything else names a later version.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KINDS = ("modules", "filter", "connection")
# podnet.cluster and podnet.lab (lab/): the lab's plugins came from podnet.cluster and share its versions.
ROOTS = (REPO, REPO / "lab")


def version_key(version):
    return tuple(int(p) for p in str(version).split("."))


def documentation(path: Path):
    if path.suffix == ".yml":
        return (yaml.safe_load(path.read_text()) or {}).get("DOCUMENTATION")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
    return None


def current_plugins():
    found = {}
    for kind in KINDS:
        for path in sorted(p for root in ROOTS for p in (root / "plugins" / kind).glob("*")):
            if path.suffix in (".py", ".yml") and path.stem != "__init__":
                doc = documentation(path)
                if doc:  # lab.py holds filters documented in their own .yml files
                    found["%s/%s" % (kind, doc.get("name") or path.stem)] = doc
    return found


BASELINE = json.loads((REPO / "tests" / "unit" / "data" / "plugins-0.1.0.json").read_text())["plugins"]
PLUGINS = current_plugins()
RELEASES = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())["releases"]
DEVELOPMENT = str(yaml.safe_load((REPO / "galaxy.yml").read_text())["version"])
VERSIONS = set(map(str, RELEASES)) | {DEVELOPMENT}


def test_the_versions():
    assert "0.1.0" in RELEASES
    assert max(VERSIONS, key=version_key) == DEVELOPMENT
    assert len(PLUGINS) >= 10


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_plugin_and_option_version_added(plugin):
    doc = PLUGINS[plugin]
    added = str(doc.get("version_added"))
    assert added in VERSIONS, "%s: version_added %s is no version of the changelog" % (plugin, added)
    old = BASELINE.get(plugin)
    if old is None:
        assert added != "0.1.0", "%s is not in 0.1.0 but says version_added 0.1.0" % plugin
    else:
        assert added == "0.1.0", "%s was in 0.1.0 but says version_added %s" % (plugin, added)
    for name, option in (doc.get("options") or {}).items():
        option_added = option.get("version_added")
        if old is None or name in old["options"]:
            assert option_added in (None, added), "%s option %s: version_added %s" % (plugin, name, option_added)
        else:
            assert str(option_added) in VERSIONS and version_key(option_added) > version_key(added), (
                "%s option %s came after %s: it needs version_added (%s)" % (plugin, name, added, option_added))


def test_the_changelog_lists_each_plugin_in_the_release_that_added_it():
    for version, release in RELEASES.items():
        listed = ["modules/%s" % m["name"] for m in release.get("modules", [])]
        for kind, plugins in (release.get("plugins") or {}).items():
            listed += ["%s/%s" % (kind, p["name"]) for p in plugins]
        for plugin in listed:
            if plugin in PLUGINS:  # removed plugins stay in the history
                assert str(PLUGINS[plugin]["version_added"]) == str(version), plugin
