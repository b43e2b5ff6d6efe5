# SPDX-License-Identifier: Apache-2.0
"""Sampled verify (plugins/plugin_utils/verify.py): which peers each node probes, and that the sample is judged
and reported like the full matrix, in time and memory linear in the number of probes."""

from __future__ import annotations

import ipaddress
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.podnet.cluster.plugins.plugin_utils.verify import (
    VerifyError,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify_judge import judge
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify_sample import (
    DEFAULT_PEERS,
    FULL_MATRIX_MAX,
    peer_count,
    plan_targets,
    select_targets,
)

EXTERNAL = {"ipv4": "198.51.100.10", "port": 47300, "server": "ext"}


def names_of(count):
    return ["n%d" % i for i in range(1, count + 1)]


def degrees(targets):
    indeg = {n: 0 for n in targets}
    for src, dsts in targets.items():
        for dst in dsts:
            indeg[dst] += 1
    return {n: len(d) for n, d in targets.items()}, indeg


@settings(max_examples=150, deadline=None)
@given(count=st.integers(2, 60), peers=st.integers(1, 12), seed=st.integers(0, 10 ** 6),
       segment_count=st.integers(1, 6))
def test_every_node_is_source_and_target_and_no_node_probes_itself(count, peers, seed, segment_count):
    names = names_of(count)
    segments = {n: "s%d" % (i % segment_count) for i, n in enumerate(names)}
    chosen = select_targets(names, segments, peers, seed)
    targets = chosen["targets"]
    out, indeg = degrees(targets)
    assert set(targets) == set(names)
    for src, dsts in targets.items():
        assert src not in dsts and len(dsts) == len(set(dsts))
        assert 1 <= len(dsts) <= peers + 1
    assert all(v >= 1 for v in indeg.values())
    # deterministic
    assert select_targets(list(reversed(names)), segments, peers, seed) == chosen


@settings(max_examples=100, deadline=None)
@given(count=st.integers(2, 80), peers=st.integers(1, 10), seed=st.integers(0, 10 ** 6))
def test_one_segment_is_a_circulant_and_the_rotations_cover_every_pair(count, peers, seed):
    names = names_of(count)
    segments = {n: "" for n in names}
    first = select_targets(names, segments, peers, seed)
    k = min(peers, count - 1)
    out, indeg = degrees(first["targets"])
    assert set(out.values()) == {k} and set(indeg.values()) == {k}
    covered = set()
    for s in range(first["rotations"]):
        chosen = select_targets(names, segments, peers, s)
        assert chosen["rotation"] == s
        covered |= {(a, b) for a, dsts in chosen["targets"].items() for b in dsts}
    assert covered == {(a, b) for a in names for b in names if a != b}
    assert first["rotations"] == -(-(count - 1) // k)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=2, max_size=8), peers=st.integers(2, 8))
def test_rotations_cover_every_pair_in_a_segment_and_every_pair_of_segments(sizes, peers):
    names, segments = [], {}
    for s, size in enumerate(sizes):
        for i in range(size):
            name = "s%d-n%d" % (s, i)
            names.append(name)
            segments[name] = "seg%d" % s
    rotations = select_targets(names, segments, peers, 0)["rotations"]
    pairs, seg_pairs = set(), set()
    for seed in range(rotations):
        for a, dsts in select_targets(names, segments, peers, seed)["targets"].items():
            for b in dsts:
                pairs.add((a, b))
                seg_pairs.add((segments[a], segments[b]))
    for a in names:
        for b in names:
            if a != b and segments[a] == segments[b]:
                assert (a, b) in pairs, (a, b)
    assert seg_pairs >= {(x, y) for x in set(segments.values()) for y in set(segments.values()) if x != y}
    assert rotations <= max(-(-(max(sizes) - 1) // max(1, peers - peers // 2)), len(sizes))


def test_peer_count_defaults_and_errors():
    assert peer_count("auto", FULL_MATRIX_MAX)[0] is None
    assert peer_count(None, FULL_MATRIX_MAX + 1)[0] == DEFAULT_PEERS
    assert "more than %d" % FULL_MATRIX_MAX in peer_count("", 50)[1]
    assert peer_count("all", 5000)[0] is None
    assert peer_count(3, 10)[0] == 3
    assert peer_count(9, 10)[0] is None  # 9 peers of 10 nodes: every other node
    for bad in ("some", 0, -2, "1.5"):
        with pytest.raises(VerifyError, match="podnet_verify_peers"):
            peer_count(bad, 10)
    with pytest.raises(VerifyError, match="podnet_verify_seed"):
        select_targets(["a", "b"], {}, 1, "x")


# --- the sampled matrix, built and judged ---------------------------------------------------------------

def make_cluster(count, dual=False, segments=1):
    nodes, pods, peers, servers = {}, {}, {}, {}
    for i in range(count):
        name = "node%d" % (i + 1)
        seg = i % segments
        b, c = divmod(i, 250)
        pod_cidrs = ["10.%d.%d.0/24" % (64 + b, c)] + (["fd00:10:%x:%x::/64" % (b, c)] if dual else [])
        nodes[name] = {
            "node_ips": ["172.%d.%d.%d" % (16 + seg, b, c + 2)] + (
                [str(ipaddress.ip_address("fd30:%x::%x" % (seg + 1, i + 2)))] if dual else []),
            "node_cidrs": ["172.%d.0.0/16" % (16 + seg)] + (["fd30:%x::/64" % (seg + 1)] if dual else []),
            "pod_cidrs": pod_cidrs,
            "gateways": [], "bridge_addresses": [],
        }
        for table, host, prefix in ((pods, "2", "pod-"), (peers, "3", "peer-")):
            ips = [str(ipaddress.ip_address(x.replace("0/24", host).replace("::/64", "::" + host)))
                   for x in pod_cidrs]
            table[name] = {"name": prefix + name, "mode": "cni", "netns": "/proc/%d/ns/net" % (i + 10),
                           "ips": ips}
        servers[name] = {"name": "srv-" + name, "mode": "host", "netns": None}
    plan = {"cluster_cidrs": ["10.64.0.0/10"] + (["fd00:10::/32"] if dual else []),
            "node_cidrs": ["172.16.0.0/12"], "nodes": nodes}
    return plan, pods, peers, servers


def answer_all(plan, pods, peers, servers, targets, broken=None):
    """A correct network answering every planned probe (``broken``: a node whose pods answer nothing)."""
    owner, node_of = {}, {}
    for table in (pods, peers):
        for node, pod in table.items():
            for ip in pod["ips"]:
                owner[ip], node_of[ip] = pod["name"], node
    for node, info in plan["nodes"].items():
        for ip in info["node_ips"]:
            owner[ip], node_of[ip] = servers[node]["name"], node
    owner["198.51.100.10"] = "ext"
    netns_pod = {p["netns"]: p for p in pods.values()}
    results = {}
    for node, probes in targets["probes"].items():
        out = []
        for p in probes:
            fam = 6 if ":" in p["target"] else 4
            if p["source_netns"]:
                local = next(ip for ip in netns_pod[p["source_netns"]]["ips"] if (":" in ip) == (fam == 6))
            else:
                local = next(ip for ip in plan["nodes"][node]["node_ips"] if (":" in ip) == (fam == 6))
            seen = plan["nodes"][node]["node_ips"][0] if p["target"] == "198.51.100.10" else local
            if broken and broken in (node, node_of.get(p["target"])) and not p["target"] == "198.51.100.10":
                out.append(dict(p, ok=False, error="timeout (connect, 3.0 s)", attempts=2))
                continue
            out.append(dict(p, ok=True, local=local, seen=seen, server=owner[p["target"]]))
        results[node] = {"probes": out, "addresses": list(plan["nodes"][node]["node_ips"]),
                         "self_checks": [dict(c, ok=True) for c in targets["servers"][node]]}
    return results


def test_sampled_matrix_every_node_source_and_target_of_every_check():
    plan, pods, peers, servers = make_cluster(40, dual=True, segments=3)
    targets = plan_targets(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=peers, sample="auto",
                           seed=7)
    assert targets["sampling"]["mode"] == "sampled" and targets["sampling"]["peers"] == DEFAULT_PEERS
    assert targets["sampling"]["segments"] == 3 and targets["sampling"]["seed"] == 7
    results = answer_all(plan, pods, peers, servers, targets)
    summary = judge(plan, list(plan["nodes"]), pods, servers, results, EXTERNAL, peers=peers,
                    selection=targets["selection"], sampling=targets["sampling"])
    assert summary["passed"], summary["report"]
    assert summary["total"] == sum(len(p) for p in targets["probes"].values())
    for matrix in summary["checks"]:
        if matrix["check"] == "egress":
            assert len(matrix["sources"]) == 40
            continue
        assert set(matrix["sources"]) == set(plan["nodes"]) == set(matrix["targets"]), matrix["title"]
    # the report of a big cluster: one line per check and family, no matrix, the seed and the rotation
    report = summary["report_lines"]
    assert report[0].startswith("Probes: sampled: 10 peers per node (40 nodes, more than 30")
    assert "seed 7 (rotation" in report[0]
    assert "pod -> pod (IPv6): %d of %d ok" % ((DEFAULT_PEERS + 1) * 40, (DEFAULT_PEERS + 1) * 40) in report
    assert not any("from \\ to" in line for line in report)


def test_sampled_verify_names_the_broken_node():
    plan, pods, peers, servers = make_cluster(60)
    targets = plan_targets(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=peers, sample=4, seed=3)
    results = answer_all(plan, pods, peers, servers, targets, broken="node17")
    summary = judge(plan, list(plan["nodes"]), pods, servers, results, EXTERNAL, peers=peers,
                    selection=targets["selection"], sampling=targets["sampling"])
    assert not summary["passed"]
    assert all("node17" in (f["source"], f["target"]) for f in summary["failures"])
    assert {f["category"] for f in summary["failures"]} == {"network"}
    lines = summary["report_lines"]
    assert "  from node17: %d failed" % len(summary["failures_by_source"]["node17"]) in lines
    # other sources that probed node17 are listed under their own name, their cells only
    others = [s for s in summary["failures_by_source"] if s != "node17"]
    assert others and all(len(v) <= 3 for k, v in summary["failures_by_source"].items() if k != "node17")


def test_a_server_that_does_not_serve_is_a_harness_problem():
    plan, pods, peers, servers = make_cluster(5)
    targets = plan_targets(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=peers)
    results = answer_all(plan, pods, peers, servers, targets)
    for node, res in results.items():
        for p in res["probes"]:
            if p["target"] == pods["node3"]["ips"][0]:
                p.update(ok=False, error="connection refused (connect)", seen=None, server=None, attempts=2)
    for c in results["node3"]["self_checks"]:
        if c["id"].startswith("self/pod-node3/"):
            c.update(ok=False, error="connection refused (connect)")
    summary = judge(plan, list(plan["nodes"]), pods, servers, results, EXTERNAL, peers=peers)
    assert summary["failures"] and {f["category"] for f in summary["failures"]} == {"harness"}
    assert "pod-node3 does not answer even inside its own namespace" in summary["failures"][0]["reason"]
    assert summary["self_checks_failed"] == ["pod-node3"]
    # the same refusal while the server serves: the network rejects it
    for c in results["node3"]["self_checks"]:
        c.update(ok=True, error=None)
    summary = judge(plan, list(plan["nodes"]), pods, servers, results, EXTERNAL, peers=peers)
    assert {f["category"] for f in summary["failures"]} == {"network"}
    assert "refused although its probe server listens" in summary["failures"][0]["reason"]


def test_building_and_judging_is_linear_in_the_probes():
    """Sampled: the probe count and the memory per probe stay flat from 250 to 1,000 nodes (memory is counted
    by tracemalloc, which other work on the machine does not change; the time is make bench's verify item)."""
    per_probe = {}
    for count in (250, 1000):
        plan, pods, peers, servers = make_cluster(count, segments=4)
        tracemalloc.start()
        targets = plan_targets(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=peers, sample=6, seed=1)
        results = answer_all(plan, pods, peers, servers, targets)
        summary = judge(plan, list(plan["nodes"]), pods, servers, results, EXTERNAL, peers=peers,
                        selection=targets["selection"], sampling=targets["sampling"])
        _cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert summary["passed"]
        probes = summary["total"]
        assert probes <= count * (3 * (6 + 2) + 1)
        per_probe[count] = peak / probes
    assert per_probe[1000] < 2.0 * per_probe[250], per_probe
