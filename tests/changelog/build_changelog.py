# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Write CHANGELOG.md from changelogs/changelog.yaml and the fragments, unreleased ones included.

``antsibull-changelog generate`` writes only released versions. Until galaxy.yml's version is released, this
script releases it in a scratch copy of the checkout (the fragments stay where they are: keep_fragments), so
CHANGELOG.md shows what the next version holds, its new modules and plugins found by their ``version_added``.
At release time run ``antsibull-changelog release`` in the checkout instead.

Usage: .venv/bin/python tests/changelog/build_changelog.py [--check]
  --check   do not write; exit 1 if CHANGELOG.md differs from what would be written
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The date antsibull-changelog needs for the unreleased version; CHANGELOG.md does not show it.
UNRELEASED_DATE = "2099-01-01"


def build() -> str:
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    released = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())["releases"] or {}
    with tempfile.TemporaryDirectory(prefix="podnet-changelog-") as scratch:
        target = Path(scratch) / "ansible_collections" / "podnet" / "cluster"
        target.mkdir(parents=True)
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                check=True, capture_output=True).stdout.split(b"\0")
        for name in (n.decode() for n in listed if n):
            if (REPO / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target / name)
        env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")),
                   ANSIBLE_COLLECTIONS_PATH=scratch)
        env.pop("ANSIBLE_CONFIG", None)
        command = [str(BIN / "antsibull-changelog"), "generate"]
        if version not in released:
            command = [str(BIN / "antsibull-changelog"), "release", "--version", version, "--date", UNRELEASED_DATE]
        proc = subprocess.run(command, cwd=target, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit("build_changelog: %s failed:\n%s%s" % (" ".join(command), proc.stdout, proc.stderr))
        return (target / "CHANGELOG.md").read_text()


def main(argv) -> int:
    text = build()
    current = REPO / "CHANGELOG.md"
    if "--check" in argv:
        if not current.exists() or current.read_text() != text:
            sys.stderr.write("CHANGELOG.md is not what changelogs/ generates: run `make changelog`\n")
            return 1
        return 0
    current.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
