# SPDX-License-Identifier: Apache-2.0
"""Unit tests of the HTML report (plugins/plugin_utils/report.py): escaping, every node, every failed cell, the
fabrics, the large-cluster form, and nothing to fetch."""

from __future__ import annotations

import re

import pytest

from ansible_collections.podnet.cluster.plugins.plugin_utils.report import (
    MATRIX_MAX,
    Fabric,
    ReportError,
    Router,
    matrix_cells,
    render,
    segments,
)
from lib.report_dom import ReportDom

CHECKS = (("pod_pod", "pod -> pod"), ("node_pod", "node -> pod"), ("pod_node", "pod -> node"))


def make_plan(names, dual=True, segment_of=lambda i: 0):
    nodes = {}
    for i, name in enumerate(names, start=1):
        seg = segment_of(i)
        pod = ["10.88.%d.%d/26" % (i // 4, (i % 4) * 64)] + (["fd00:88:%x::/64" % i] if dual else [])
        nodes[name] = {
            "node_ips": ["192.168.%d.%d" % (seg, i % 250 + 2)] + (["fd12:%x::%x" % (seg, i)] if dual else []),
            "node_cidrs": ["192.168.%d.0/24" % seg] + (["fd12:%x::/64" % seg] if dual else []),
            "pod_cidrs": pod,
            "gateways": [],
        }
    return {"cluster_cidrs": ["10.88.0.0/16"] + (["fd00:88::/48"] if dual else []), "service_cidrs": ["10.96.0.0/12"],
            "node_prefix_ipv4": 26, "node_prefix_ipv6": 64 if dual else None, "nodes": nodes}


def judged(plan, broken=(), families=(4, 6), skip=()):
    """A judged result in the shape of podnet_verify_result: every cell from or to a broken node fails (timeout),
    cells in ``skip`` were not probed (a sample: "-")."""
    names = list(plan["nodes"])
    checks, failures = [], []
    ok = total = 0
    for check, title in CHECKS:
        for family in families:
            rows = {}
            matrix = {"check": check, "family": family, "title": "%s (IPv%d)" % (title, family), "sources": names,
                      "targets": names, "rows": rows, "ok_count": 0, "total": 0}
            for src in names:
                for dst in names:
                    if (src, dst) in skip:
                        rows.setdefault(src, {})[dst] = "-"
                        continue
                    matrix["total"] += 1
                    total += 1
                    if src != dst and (src in broken or dst in broken):
                        rows.setdefault(src, {})[dst] = "FAIL (timeout)"
                        failures.append({"check": check, "family": family, "source": src, "target": dst,
                                         "address": "10.88.0.2", "reason": "timeout: no answer from %s in 3 s" % dst})
                    else:
                        rows.setdefault(src, {})[dst] = "ok"
                        matrix["ok_count"] += 1
                        ok += 1
            checks.append(matrix)
    return {"passed": not failures, "total": total, "ok_count": ok, "failed_count": len(failures), "nodes": names,
            "checks": checks, "failures": failures}


def failure_keys(verify):
    return {(f["check"], f["family"], f["source"], f["target"]) for f in verify["failures"]}


def test_node_names_are_escaped_everywhere():
    names = ['<b>evil</b>', 'a&b', 'q"uote', "it's", "plain-7"]
    plan = make_plan(names)
    verify = judged(plan, broken=['<b>evil</b>'])
    page = render(plan, Fabric(), verify, title="<script>x</script>")
    assert "<b>evil</b>" not in page and "<script" not in page
    assert "&lt;b&gt;evil&lt;/b&gt;" in page and "a&amp;b" in page and "q&quot;uote" in page
    dom = ReportDom(page)
    assert dom.nodes() == set(names)
    assert dom.cells("failed") == failure_keys(verify)


@pytest.mark.parametrize("count", [1, 7, MATRIX_MAX, MATRIX_MAX + 1, 250])
def test_every_node_appears_once_in_the_drawing(count):
    names = ["w%d" % i for i in range(1, count + 1)]
    plan = make_plan(names, segment_of=lambda i: i % 3)
    page = render(plan, Fabric())
    dom = ReportDom(page)
    drawn = [a["data-node"] for _t, a in dom.elements if a.get("class") == "node"]
    assert sorted(drawn) == sorted(names)


def test_small_matrix_every_cell_and_every_failure_with_its_reason():
    plan = make_plan(["n1", "n2", "n10", "n3"])
    verify = judged(plan, broken=["n10"], skip={("n1", "n3")})
    page = render(plan, Fabric(), verify)
    dom = ReportDom(page)
    failed, ok, skipped = dom.cells("failed"), dom.cells("ok"), dom.cells("skipped")
    assert failed == failure_keys(verify) and len(failed) == 3 * 2 * 6
    assert ("pod_pod", 4, "n1", "n3") in skipped and ("pod_pod", 4, "n1", "n3") not in ok | failed
    assert len(failed) + len(ok) + len(skipped) == 3 * 2 * 16
    # each failed cell says why, in its tooltip
    assert sum("timeout: no answer from n10 in 3 s" in t for t in dom.titles()) >= 3 * 2 * 3
    assert "FAILED" in page and "%d of %d" % (verify["ok_count"], verify["total"]) in page


def test_large_cluster_groups_the_failures_by_source():
    names = ["node%d" % i for i in range(1, MATRIX_MAX + 12)]
    plan = make_plan(names)
    verify = judged(plan, broken=["node7"], families=(4,))
    page = render(plan, Fabric(), verify)
    dom = ReportDom(page)
    assert dom.cells("failed") == failure_keys(verify)
    assert not dom.cells("ok"), "no grid above %d nodes" % MATRIX_MAX
    # per check: node7 -> every other node, and every other node -> node7, in two groups
    assert len(dom.groups) == 2 * len(CHECKS)
    assert len(page) < 400_000


def test_the_fabrics_are_drawn():
    plan = make_plan(["a1", "a2", "b1"], segment_of=lambda i: 0 if i < 3 else 1)
    assert [label for label, _n in segments(plan)] == ["192.168.0.0/24, fd12::/64", "192.168.1.0/24, fd12:1::/64"]
    page = render(plan, Fabric())
    assert "l2_routes" in page and "10.88.0.128/26 via 192.168.0.4" in page  # a1's route to a2
    page = render(plan, Fabric("router", routers=[Router("core<1>", ["10.10.0.1"])]))
    assert 'data-fabric="router"' in page and "core&lt;1&gt;" in page and "10.10.0.1" in page
    assert "via the node" in page
    page = render(plan, Fabric("gce", gce_network="vpc-7", gce_project="proj"))
    assert 'data-fabric="gce"' in page and "vpc-7" in page and "Compute Engine" in page
    page = render(plan, Fabric("l2_bridge", bridge="br-pods"))
    assert 'class="bus shared"' in page and "br-pods" in page
    page = render(plan, Fabric("vxlan", vxlan_vni=42, vxlan_port=8472))
    assert 'data-fabric="vxlan"' in page and "VNI 42" in page and "8472" in page
    with pytest.raises(ReportError, match="podnet_fabric"):
        Fabric("flannel")
    with pytest.raises(ReportError, match="nodes"):
        render({"cluster_cidrs": []})


def test_the_page_fetches_nothing():
    plan = make_plan(["x1", "x2"])
    page = render(plan, Fabric("router", routers=[Router("r")]), judged(plan, broken=["x2"]))
    lowered = page.lower()
    for needle in ("http:", "https:", "//", "<script", "src=", "href=", "url(", "@import", "<link", "@font-face"):
        if needle == "//":
            # no protocol-relative address anywhere (a comment-free page: // appears only in an address)
            assert not re.search(r"[\"'(]\s*//", lowered), needle
            continue
        assert needle not in lowered, needle


def test_matrix_cells_reads_the_judged_structure():
    plan = make_plan(["m1", "m2"], dual=False)
    verify = judged(plan, broken=["m2"], families=(4,))
    cells = matrix_cells(verify)
    assert len(cells) == 3 * 4
    bad = [c for c in cells if c["state"] == "failed"]
    assert {(c["source"], c["target"]) for c in bad} == {("m1", "m2"), ("m2", "m1")}
    assert all(c["reason"].startswith("timeout") for c in bad)


def test_a_sampled_judgement_of_the_real_judge():
    """The structure verify's own judge returns for a sampled run of 40 nodes: cells outside the sample are absent
    from its rows and must be drawn as not probed, never as failed; every judged failure appears once."""
    from ansible_collections.podnet.cluster.plugins.plugin_utils import verify_judge, verify_sample

    names = ["s%d" % i for i in range(1, 41)]
    plan = make_plan(names, dual=False)
    selection, sampling = verify_sample.selection_for(plan, names, "auto", 7)
    assert sampling["mode"] == "sampled"
    # no probe pod anywhere and no result: every sampled cell fails ("not probed: no probe pod")
    judged_result = verify_judge.judge(plan, names, {}, {}, {}, None, 47300, selection=selection, sampling=sampling)
    assert judged_result["failed_count"] == judged_result["total"] < 3 * 40 * 40
    cells = matrix_cells(judged_result)
    assert {(c["check"], c["family"], c["source"], c["target"]) for c in cells if c["state"] == "failed"} == \
        failure_keys(judged_result)
    assert sum(c["state"] == "skipped" for c in cells) == 3 * 40 * 40 - judged_result["total"]
    page = render(plan, Fabric(), judged_result)
    dom = ReportDom(page)
    assert dom.cells("failed") == failure_keys(judged_result)
    assert dom.nodes() == set(names)
    assert "A sample" in page and "seed 7" in page
