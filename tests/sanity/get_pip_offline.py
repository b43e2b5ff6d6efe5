# SPDX-License-Identifier: Apache-2.0
"""Stands in for ansible-test's downloaded pip bootstrap script (get-pip.py).

ansible-test runs it as ``python get_pip.py [pip options] pip==X.Y`` inside a new, empty
virtual environment, one per sanity test that has requirements (about ten). This stand-in
installs the pip it asks for from that version's wheel, kept beside this script
(``podnet-pip-wheels/``): the wheel's files are unpacked into the environment's
site-packages and its ``pip`` scripts written, as an installer would, which takes a
fraction of a second. The first time (no wheel kept yet), pip comes from the
interpreter's own bundled wheel (``ensurepip``), which downloads the wheel of the
requested version from the configured package index and installs it; either way any
other requested packages are installed by that pip from the index, as get-pip.py would.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

WHEELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "podnet-pip-wheels")


def wheel_path(version):
    return os.path.join(WHEELS, "pip-%s-py3-none-any.whl" % version)


def kept_wheel(version):
    return wheel_path(version) if os.path.isfile(wheel_path(version)) else None


def keep_wheel(version, pip_options):
    """Download pip==version's wheel with the pip ensurepip installed here; its path, or None."""
    os.makedirs(WHEELS, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=WHEELS)
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
                               ":all:", "-d", scratch] + pip_options + ["pip==%s" % version], check=False)
        found = [n for n in os.listdir(scratch) if n.endswith(".whl")] if proc.returncode == 0 else []
        if len(found) != 1:
            return None
        os.replace(os.path.join(scratch, found[0]), wheel_path(version))
        return wheel_path(version)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unpack(wheel):
    """pip from its wheel: its files into site-packages, its scripts into the environment's bin, each listed in its
    RECORD so that uninstalling it (ansible-test does, once the requirements are in) leaves nothing behind."""
    paths = sysconfig.get_paths()
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(paths["purelib"])
        info = next(n.split("/")[0] for n in archive.namelist() if n.split("/")[0].endswith(".dist-info"))
    written = [os.path.join(paths["purelib"], info, "INSTALLER")]
    with open(written[0], "w") as installer:
        installer.write("podnet-get-pip\n")
    for name in ("pip", "pip%d" % sys.version_info[0], "pip%d.%d" % sys.version_info[:2]):
        written.append(os.path.join(paths["scripts"], name))
        with open(written[-1], "w") as out:
            out.write("#!%s\nimport sys\nfrom pip._internal.cli.main import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n" % sys.executable)
        os.chmod(written[-1], 0o755)
    with open(os.path.join(paths["purelib"], info, "RECORD"), "a") as record:
        record.writelines("%s,,\n" % os.path.relpath(path, paths["purelib"]) for path in written)


def main():
    # get-pip.py options that pip install does not take
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    packages = [a for a in args if not a.startswith("-")]
    options = [a for a in args if a.startswith("-")]
    pins = [p for p in packages if p.startswith("pip==")]
    version = pins[0].split("==", 1)[1] if len(pins) == 1 else None
    wheel = kept_wheel(version) if version else None
    if wheel is None:
        subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
                       stdout=subprocess.DEVNULL)
        wheel = keep_wheel(version, options) if version else None
        if wheel is not None:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"] + options
                           + [wheel], check=True)
    else:
        unpack(wheel)
    if wheel is not None:
        packages = [p for p in packages if p not in pins]
    if packages:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet"] + options + packages, check=True)


if __name__ == "__main__":
    main()
