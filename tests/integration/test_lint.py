# SPDX-License-Identifier: Apache-2.0
"""ansible-lint, production profile, over roles, playbooks and molecule (config: .ansible-lint)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ansible_lint_production_profile():
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ.get("PATH", "")), NO_COLOR="1",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    proc = subprocess.run([str(bin_dir / "ansible-lint"), "--nocolor"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    assert "Passed" in proc.stdout + proc.stderr
