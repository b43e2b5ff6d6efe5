# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Run ``ansible-test sanity`` on this checkout's two collections, offline as far as ansible-test's own downloads go.

ansible-test wants a collection at ``.../ansible_collections/NAMESPACE/NAME/`` inside a git work tree, and
downloads a pip bootstrap script (get-pip.py) into each virtual environment it makes. This script:

1. seeds ansible-test's cache, ``~/.ansible/test/cache/get_pip_<pip version>.py``, with
   ``get_pip_offline.py`` (the pip ansible-test asks for, unpacked from its wheel, which the first virtual
   environment fetches with the interpreter's own ``ensurepip`` and keeps in that cache; the test requirements
   still come from the package index, as ansible-test pins them);
2. copies the checkout's files (tracked and untracked, not ignored: what ``git status`` sees) to a scratch
   ``ansible_collections/podnet/cluster`` (all but ``lab/``) and ``ansible_collections/podnet/lab`` (``lab/``,
   the collection podnet.lab, which imports podnet.cluster's module_utils), each made a git work tree with
   ``git init`` and ``git add``;
3. runs ``ansible-test sanity --venv --python <this Python>`` in podnet.cluster, then in podnet.lab (or only
   in those named with ``--collection cluster`` / ``--collection lab``), with any further arguments
   (e.g. ``--test pylint``), and exits with the first failing status.

Usage: .venv/bin/python tests/sanity/run_sanity.py [--collection cluster|lab ...] [ansible-test sanity options]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAND_IN = Path(__file__).with_name("get_pip_offline.py")


def pip_version() -> str:
    """The pip version ansible-test bootstraps into its virtual environments (its get_venv_packages)."""
    import ansible_test  # the installed ansible-test of this interpreter's ansible-core

    source = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    found = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", source.read_text())
    if not found:
        sys.exit("run_sanity: cannot find the pip version in %s (ansible-test changed?)" % source)
    return found.group(1)


def seed_cache() -> Path:
    cache = Path.home() / ".ansible" / "test" / "cache" / ("get_pip_%s.py" % pip_version().replace(".", "_"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not cache.exists() or cache.read_bytes() != STAND_IN.read_bytes():
        shutil.copyfile(STAND_IN, cache)
    return cache


LAB = "lab"  # the directory of podnet.lab in this checkout


def copy_checkout(root: Path) -> dict:
    """The checkout's files under root/ansible_collections/podnet/{cluster,lab}, each a git work tree of its own."""
    targets = {name: root / "ansible_collections" / "podnet" / name for name in ("cluster", "lab")}
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.split(b"\0")
    for name in (n.decode() for n in listed if n):
        src = REPO / name
        if not src.is_file() and not src.is_symlink():
            continue  # deleted in the work tree but not yet in the index
        if name.startswith(LAB + "/"):
            dst = targets["lab"] / name[len(LAB) + 1:]
        else:
            dst = targets["cluster"] / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
    env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_SYSTEM=os.devnull)
    for target in targets.values():
        subprocess.run(["git", "init", "-q"], cwd=target, check=True, env=env)
        subprocess.run(["git", "add", "-A"], cwd=target, check=True, env=env)
    return targets


def main(argv) -> int:
    argv = list(argv)
    chosen = []
    while "--collection" in argv:
        at = argv.index("--collection")
        chosen.append(argv[at + 1])
        del argv[at:at + 2]
    chosen = chosen or ["cluster", "lab"]
    seed_cache()
    version = "%d.%d" % sys.version_info[:2]
    with tempfile.TemporaryDirectory(prefix="podnet-sanity-") as scratch:
        targets = copy_checkout(Path(scratch))
        env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
        env.pop("ANSIBLE_CONFIG", None)  # the checkout's ansible.cfg names a collections path of its own
        for name in chosen:
            print("run_sanity: podnet.%s" % name, flush=True)
            proc = subprocess.run([str(BIN / "ansible-test"), "sanity", "--venv", "--python", version,
                                   "--color", "no"] + argv, cwd=targets[name], env=env, check=False)
            if proc.returncode:
                return proc.returncode
        return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
