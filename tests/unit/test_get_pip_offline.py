# SPDX-License-Identifier: Apache-2.0
"""tests/sanity/get_pip_offline.py, ansible-test's pip bootstrap stand-in: with the wheel of the pip asked for kept
beside it, it puts that pip into a new virtual environment without pip (its files, its scripts, each listed in its
RECORD for a clean uninstall) and runs no installer. The wheel here is a small stand-in pip of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VERSION = "99.1"
FILES = {
    "pip/__init__.py": "",
    "pip/__main__.py": "import sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n",
    "pip/_internal/__init__.py": "",
    "pip/_internal/cli/__init__.py": "",
    "pip/_internal/cli/main.py": "import sys\n\ndef main():\n    print('stand-in pip', ' '.join(sys.argv[1:]))\n"
                                 "    return 0\n",
    "pip-%s.dist-info/METADATA" % VERSION: "Metadata-Version: 2.1\nName: pip\nVersion: %s\n" % VERSION,
    "pip-%s.dist-info/WHEEL" % VERSION: "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}


def test_the_kept_wheel_is_unpacked_with_its_scripts_and_record(tmp_path):
    cache = tmp_path / "cache"
    (cache / "podnet-pip-wheels").mkdir(parents=True)
    script = cache / "get_pip_99_1.py"
    shutil.copyfile(REPO / "tests" / "sanity" / "get_pip_offline.py", script)
    wheel = cache / "podnet-pip-wheels" / ("pip-%s-py3-none-any.whl" % VERSION)
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in FILES.items():
            archive.writestr(name, text)
        archive.writestr("pip-%s.dist-info/RECORD" % VERSION, "".join("%s,,\n" % n for n in FILES))
    venv = tmp_path / "venv"
    subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run([str(python), str(script), "--disable-pip-version-check", "pip==%s" % VERSION],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == "", proc
    ran = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout
    assert ran == "stand-in pip list\n", ran
    minor = "pip%d.%d" % sys.version_info[:2]
    for name in ("pip", "pip%d" % sys.version_info[0], minor):
        out = subprocess.run([str(venv / "bin" / name), "--version"], capture_output=True, text=True, check=True)
        assert out.stdout == "stand-in pip --version\n", (name, out)
    site = next((venv / "lib").glob("python*/site-packages"))
    record = (site / ("pip-%s.dist-info" % VERSION) / "RECORD").read_text().splitlines()
    assert "pip-%s.dist-info/INSTALLER,," % VERSION in record, record
    assert "../../../bin/%s,," % minor in record, record
    assert (site / ("pip-%s.dist-info" % VERSION) / "INSTALLER").read_text() == "podnet-get-pip\n"
