# SPDX-License-Identifier: Apache-2.0
"""The HTML report (podnet_report_dir) of `podnet.cluster.plan` and `podnet.cluster.verify`, opened in headless
Chromium, on the dual-stack three-node verify lab with a real failure planted: node2's cbr0 is down, so its pods
are cut off while every node still answers on its node IP.

The page must show every node and every cell the judge failed (read back from Chromium's DOM, `--dump-dom`), its
screenshot must be a real picture holding the colours of failed and passed cells, and the plan playbook must write
nothing in check mode. The screenshots are kept under the lab directory while the test runs; set
PODNET_REPORT_KEEP=<dir> to keep copies (to look at them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lib.report_dom import ReportDom, png_pixels

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
RED, GREEN = (0xD0, 0x34, 0x2C), (0x2E, 0x9D, 0x4F)  # .cell.failed, .cell.ok of the page's style


def chromium(*args: str) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile of its own, removed afterwards."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: make test installs it (Debian package chromium)")
    profile = tempfile.mkdtemp(prefix="podnet-report-chromium-")
    try:
        return subprocess.run([CHROMIUM, *FLAGS, "--user-data-dir=%s" % profile, *args], capture_output=True,
                              text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dom_of(page: Path) -> ReportDom:
    proc = chromium("--dump-dom", page.as_uri())
    assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-3000:]
    return ReportDom(proc.stdout)


def screenshot(page: Path, png: Path, size=(1280, 1600)):
    proc = chromium("--screenshot=%s" % png, "--window-size=%d,%d" % size, page.as_uri())
    assert proc.returncode == 0 and png.exists(), proc.stderr[-3000:]
    keep = os.environ.get("PODNET_REPORT_KEEP")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
    return png_pixels(png.read_bytes())


def test_plan_and_verify_reports_show_every_node_and_every_failed_cell(lab):
    report_dir = lab.root / "report"
    nodes = {"node1", "node2", "node3"}

    # the plan playbook: nothing written in check mode, then plan.html
    run = lab.playbook("--check", "-e", "podnet_report_dir=%s" % report_dir, playbook="podnet.cluster.plan")
    assert run.rc == 0, run.text
    assert not report_dir.exists(), "check mode wrote the report"
    run = lab.playbook("-e", "podnet_report_dir=%s" % report_dir, playbook="podnet.cluster.plan")
    assert run.rc == 0, run.text
    plan_page = report_dir / "plan.html"
    assert oct(plan_page.stat().st_mode & 0o777) == "0o644"
    dom = dom_of(plan_page)
    assert dom.nodes() == nodes
    assert not dom.cells("failed") and not dom.cells("ok"), "the plan report has no matrix"
    text = plan_page.read_text()
    assert "10.244.2.0/24" in text and "172.30.77.12" in text and "fd00:10:244:2::/64" in text
    again = lab.playbook("-e", "podnet_report_dir=%s" % report_dir, playbook="podnet.cluster.plan")
    written = again.task("Write the picture of the plan (podnet_report_dir/plan.html on the controller)")
    assert not next(iter(written.values()))["changed"], "the same plan rewrote the report"

    # verify with node2's bridge down: its pods are cut off
    lab.ip("node2", "link", "set", "cbr0", "down")
    run = lab.verify("-e", "podnet_report_dir=%s" % report_dir)
    assert run.rc != 0, run.text
    judged = run.result
    failures = {(f["check"], f["family"], f["source"], f["target"]) for f in judged["failures"]}
    assert failures and all("node2" in (k[2], k[3]) for k in failures), failures
    assert ("pod_pod", 4, "node1", "node2") in failures and ("pod_pod", 6, "node3", "node2") in failures

    page = report_dir / "verify.html"
    dom = dom_of(page)
    assert dom.nodes() == nodes
    assert dom.cells("failed") == failures
    assert dom.cells("ok"), "passed cells are drawn too"
    assert len(dom.cells("ok")) + len(failures) == judged["total"]
    tooltips = "\n".join(dom.titles())
    for failure in judged["failures"]:
        assert failure["reason"] in tooltips, failure

    width, height, colours = screenshot(page, lab.root / "verify.png")
    assert (width, height) == (1280, 1600)
    assert RED in colours and GREEN in colours, "the failed and the passed cells are visible"
    assert len(colours) > 50, "a blank page"
    assert (lab.root / "verify.png").stat().st_size > 20_000
    width, height, colours = screenshot(plan_page, lab.root / "plan.png")
    assert RED not in colours and len(colours) > 50
