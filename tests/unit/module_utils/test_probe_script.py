# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The stand-alone probe script (module_utils/probe.own_source): the probe's modules packed into one file that
runs with the system Python alone, outside the collection, as probe_pod runs it on a node."""
import json
import subprocess
import sys

from ansible_collections.podnet.cluster.plugins.module_utils import probe


def test_the_script_is_one_file_that_runs_alone(tmp_path):
    script = tmp_path / probe.SCRIPT_NAME
    script.write_text(probe.own_source())
    assert "ansible_collections" not in "".join(
        line for line in script.read_text().splitlines() if line.lstrip().startswith(("from ", "import ")))
    # -I: no user site, no PYTHONPATH; run from tmp_path, where no collection lies
    usage = subprocess.run([sys.executable, "-I", str(script), "serve", "--help"], cwd=str(tmp_path),
                           capture_output=True, text=True, check=False)
    assert usage.returncode == 0 and "--control-fd" in usage.stdout, usage.stderr
    # the client half: a target that is no IP address fails before any socket
    out = subprocess.run([sys.executable, "-I", str(script), "probe", "not-an-address", "--timeout", "1"],
                         cwd=str(tmp_path), capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] is False and result["error"] == "target 'not-an-address' is not an IP address"


def test_the_script_defines_the_probe_once():
    text = probe.own_source()
    for name in ("def serve(", "def run_probes(", "def main(", "def setns(", "def _read_line("):
        assert text.count(name) == 1, name
    assert text.count("from __future__ import annotations") == 1
    compile(text, probe.SCRIPT_NAME, "exec")
