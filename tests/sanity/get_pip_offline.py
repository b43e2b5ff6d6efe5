# SPDX-License-Identifier: Apache-2.0
"""Stands in for ansible-test's downloaded pip bootstrap script (get-pip.py).

ansible-test runs it as ``python get_pip.py [pip options] pip==X.Y`` inside a new, empty
virtual environment. This stand-in installs pip from the interpreter's own bundled wheel
(``ensurepip``, no network), then lets that pip install the requested packages from the
configured package index, as get-pip.py would.
"""

import subprocess
import sys


def main():
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    # get-pip.py options that pip install does not take
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    packages = [a for a in args if not a.startswith("-")]
    if packages:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet"] + args, check=True)


if __name__ == "__main__":
    main()
