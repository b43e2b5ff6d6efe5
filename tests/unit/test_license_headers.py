# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Every Python file of the repository names its license with an SPDX identifier in its header."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPDX = "# SPDX-License-Identifier: Apache-2.0"


def test_every_python_file_has_the_spdx_identifier():
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout.split()
    assert len(names) > 50
    missing = [n for n in names if (REPO / n).exists()
               and SPDX not in (REPO / n).read_text(encoding="utf-8").splitlines()[:5]]
    assert not missing, "no '%s' in the first 5 lines of: %s" % (SPDX, ", ".join(missing))
