# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The verify matrix, judged: every cell against the probe results (what a failure says about whom), the
per-check matrices, the failures, and the text report. The matrix is plugin_utils/verify.py's. Pure functions
over plain data."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify import (
    CHECK_TITLES,
    CHECKS,
    FAMILY_NAMES,
    address_of,
    cells,
    ordered,
    plan_families,
    pod_ips,
    short_error,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify_sample import REPORT_MATRIX_MAX

# --------------------------------------------------------------------------- #
# judging
# --------------------------------------------------------------------------- #

#: What a failure says about whom: the network (the pod network is wrong), the harness (verify's own probe
#: servers did not serve: not the network), capacity (the source's kernel could not hold a neighbour entry),
#: setup (a cell that could not be probed: a pod did not start, an address is missing).
CATEGORIES = ("network", "harness", "capacity", "setup")


def _server_down(cell: Mapping[str, Any], self_checks: Mapping[str, Any]) -> Optional[str]:
    """Why the target's probe server did not serve (its own self-check failed), or None (it served or unknown)."""
    name = (cell.get("expect") or {}).get("server")
    if not name or name not in self_checks:
        return None
    check = self_checks[name]
    if check.get("ok"):
        return None
    return check.get("error") or "failed"


def explain(cell: Mapping[str, Any], result: Mapping[str, Any], self_checks: Mapping[str, Any]) -> Tuple[str, str]:
    """(category, reason) of a probe that got no answer, in words a user can act on."""
    error = str(result.get("error") or "failed")
    attempts = int(result.get("attempts") or 1)
    tried = " (%d attempts)" % attempts if attempts > 1 else ""
    diagnosis = result.get("diagnosis")
    diag = ("; " + diagnosis) if diagnosis else ""
    where = "%s:%s" % (cell.get("address"), cell.get("port"))
    down = _server_down(cell, self_checks)
    server = (cell.get("expect") or {}).get("server")
    if down and any(w in error for w in ("timeout (connect", "refused")):
        return "harness", ("the probe server %s does not answer even inside its own namespace (%s): it is not "
                           "running or not serving yet, a problem of verify, not of the network%s"
                           % (server, down, tried))
    if result.get("neighbour") == "missing":
        return "capacity", ("%s: the source's kernel has no neighbour entry for the next hop%s: raise its ARP/NDP "
                            "table (net.ipv4.neigh.default.gc_thresh3 / net.ipv6.neigh.default.gc_thresh3), or probe "
                            "fewer peers at once (podnet_verify_peers)%s" % (error, diag, tried))
    if "timeout (answer" in error or "no answer" in error:
        return "harness", ("the connection to %s was accepted but the probe server did not answer in time%s: it "
                           "is overloaded or stuck, a problem of verify, not of the network (the path works)"
                           % (where, tried))
    if "timeout (connect" in error:
        return "network", ("%s: no answer to the connection to %s%s: the packets are dropped on the way or "
                           "the answers do not come back (a firewall or FORWARD policy, a route missing on one "
                           "side, the bridge down)%s" % (error, where, tried, diag))
    if "refused" in error:
        return "network", ("%s: the connection to %s was refused although its probe server listens: something "
                           "on the path or on the target rejects it (a REJECT rule)%s" % (error, where, tried))
    if "reset" in error:
        return "network", "%s: the connection to %s was reset on the way%s" % (error, where, tried)
    if "no route" in error or "unreachable" in error:
        if diagnosis and result.get("neighbour") != "none":
            return "network", "%s: %s%s" % (error, diagnosis, tried)
        return "network", "%s: no route to %s from the source%s%s" % (error, cell.get("address"), diag, tried)
    if "no source address" in error:
        return "network", "the source has no address to reach %s from (%s)" % (cell.get("address"), error)
    if "not a podnet probe server" in error:
        return "network", "%s answers, but not as a probe server: another host holds the address (%s)" % (
            where, error)
    return "network", error + tried


def _verdict(cell: Mapping[str, Any], result: Optional[Mapping[str, Any]], node_addresses: Iterable[str],
             self_checks: Optional[Mapping[str, Any]] = None) -> Tuple[bool, str, str, str]:
    """(passed, cell text, reason, category) of one cell."""
    if cell["skip"]:
        return False, "FAIL (%s)" % short_error(cell["skip"]), cell["skip"], "setup"
    if result is None:
        return (False, "FAIL (no result)", "not probed: node %s returned no result for it" % cell["source"],
                "setup")
    if not result.get("ok"):
        error = result.get("error") or "failed"
        category, reason = explain(cell, result, self_checks or {})
        return False, "FAIL (%s)" % short_error(error), reason, category
    if cell["connect_only"]:
        return True, "ok", "connected (reachability only: no probe server there)", ""
    expect = cell["expect"]
    seen = address_of(result.get("seen"))
    local = address_of(result.get("local"))
    server = result.get("server")
    if expect.get("server") and server != expect["server"]:
        return False, "FAIL (%s)" % (seen or "?"), "answered by %r, expected %r (another host has this address?)" % (
            server, expect["server"]), "network"
    if cell["check"] != "egress" and not cell["expect"].get("masqueraded") and seen != local:
        return (False, "FAIL (%s)" % (seen or "?"), "NAT: the server saw %s, the client is %s" % (seen, local),
                "network")
    if expect.get("seen") and seen != address_of(expect["seen"]):
        return (False, "FAIL (%s)" % (seen or "?"),
                "seen as %s, expected the pod's own IP %s" % (seen, expect["seen"]), "network")
    if expect.get("seen_from_node"):
        if seen not in node_addresses:
            what = ("not masqueraded to an address of node %s" if cell["check"] == "egress"
                    else "not an address of node %s")
            return False, "FAIL (%s)" % (seen or "?"), ("seen as %s: " + what) % (seen, cell["source"]), "network"
    return True, "ok", "seen as %s" % seen, ""


def judge(plan: Mapping[str, Any], nodes: Sequence[str], pods: Mapping[str, Any], servers: Mapping[str, Any],
          results: Mapping[str, Any], external: Optional[Mapping[str, Any]] = None,
          port: int = 47300, peers: Optional[Mapping[str, Any]] = None,
          selection: Optional[Mapping[str, Sequence[str]]] = None,
          sampling: Optional[Mapping[str, Any]] = None,
          fabric: Optional[str] = None) -> Dict[str, Any]:
    """Judge every cell against the probe results (``results``: node -> result of ``podnet.cluster.probe``).

    ``selection``/``sampling``: those of :func:`plan_targets` when the matrix was sampled (the same cells are
    rebuilt, O(number of probes)). Returns ``passed``, ``total``, ``ok_count``, ``failed_count``,
    ``sampling``, ``checks`` (one matrix per check and family: ``title``, ``sources``, ``targets``, ``rows``
    {source: {target: cell text}}, ``ok_count``, ``total``), ``failures`` (each with check, family, source,
    target, address, seen, local, reason, category), ``failures_by_source`` (source node -> lines),
    ``categories`` (failures per category), ``retried`` (probes that passed only on a later attempt),
    ``report`` (text) and ``report_lines``.
    """
    plan = plain(plan) or {}
    results = plain(results) or {}
    selection = plain(selection)
    all_cells = cells(plan, nodes, pods, servers, external, port, peers=peers, selection=selection,
                      fabric=fabric)
    by_id: Dict[str, Dict[str, Any]] = {}
    addresses: Dict[str, Any] = {}
    self_checks: Dict[str, Any] = {}
    plan_nodes = plan.get("nodes") or {}
    for node, res in results.items():
        res = res or {}
        addresses[node] = {address_of(a) for a in list(res.get("addresses") or []) +
                           list((plan_nodes.get(node) or {}).get("node_ips") or [])} - {None}
        for probe in res.get("probes") or []:
            if isinstance(probe, dict) and probe.get("id") is not None:
                by_id[str(probe["id"])] = probe
        for check in res.get("self_checks") or []:
            if isinstance(check, dict) and str(check.get("id") or "").startswith("self/"):
                name = str(check["id"]).split("/", 2)[1]
                # a server with several addresses serves when every one answered
                if name not in self_checks or self_checks[name].get("ok"):
                    self_checks[name] = check

    matrices: Dict[Tuple[str, int], Dict[str, Any]] = {}
    failures: List[Dict[str, Any]] = []
    failures_by_source: Dict[str, List[str]] = {}
    categories: Dict[str, int] = {}
    retried = 0
    ok_count = 0
    for cell in all_cells:
        result = by_id.get(cell["id"])
        passed, text, reason, category = _verdict(cell, result, addresses.get(cell["source"], set()), self_checks)
        key = (cell["check"], cell["family"])
        if key not in matrices:
            ext_addr = cell["address"] if cell["check"] == "egress" else None
            matrices[key] = {
                "check": cell["check"],
                "family": cell["family"],
                "title": "%s (%s%s)" % (CHECK_TITLES[cell["check"]], FAMILY_NAMES[cell["family"]],
                                        " %s port %s" % (ext_addr, cell["port"]) if ext_addr else ""),
                "sources": [],
                "targets": [],
                "rows": {},
                "ok_count": 0,
                "total": 0,
                "_sources": set(),
                "_targets": set(),
            }
        matrix = matrices[key]
        if cell["source"] not in matrix["_sources"]:
            matrix["_sources"].add(cell["source"])
            matrix["sources"].append(cell["source"])
        if cell["target"] not in matrix["_targets"]:
            matrix["_targets"].add(cell["target"])
            matrix["targets"].append(cell["target"])
        matrix["rows"].setdefault(cell["source"], {})[cell["target"]] = text
        matrix["total"] += 1
        if passed:
            ok_count += 1
            matrix["ok_count"] += 1
            if result and int(result.get("attempts") or 1) > 1:
                retried += 1
            continue
        failure = {
            "check": cell["check"],
            "family": cell["family"],
            "source": cell["source"],
            "target": cell["target"],
            "address": cell["address"],
            "seen": address_of((result or {}).get("seen")),
            "local": address_of((result or {}).get("local")),
            "reason": reason,
            "category": category,
        }
        failures.append(failure)
        categories[category] = categories.get(category, 0) + 1
        failures_by_source.setdefault(cell["source"], []).append(describe_failure(failure))

    checks = [matrices[k] for k in sorted(matrices, key=lambda k: ([c for c, _t in CHECKS].index(k[0]), k[1]))]
    names = [n for n in ordered(nodes) if n in plan_nodes]
    for matrix in checks:
        del matrix["_sources"], matrix["_targets"]
        if matrix["check"] != "egress":
            matrix["targets"] = [n for n in names if n in set(matrix["targets"])]
    total = len(all_cells)
    pods = plain(pods) or {}
    peers = plain(peers) or {}
    endpoints = {}
    for name in names:
        pod = pods.get(name) or {}
        peer = peers.get(name) or {}
        endpoints[name] = {
            "pod": pod.get("name"),
            "pod_mode": pod.get("mode"),
            "pod_ips": pod_ips(pod),
            "peer": peer.get("name"),
            "peer_ips": pod_ips(peer),
            "node_ips": [a for a in (address_of(x) for x in plan_nodes[name].get("node_ips") or []) if a],
        }
    if sampling is None:
        sampling = {"mode": "full" if selection is None else "sampled", "nodes": len(names),
                    "why": "full matrix" if selection is None else "sampled"}
    summary = {
        "passed": total > 0 and not failures,
        "total": total,
        "ok_count": ok_count,
        "failed_count": len(failures),
        "nodes": names,
        "families": plan_families(plan),
        "sampling": dict(plain(sampling)),
        "endpoints": endpoints,
        "checks": checks,
        "failures": failures,
        "failures_by_source": failures_by_source,
        "categories": categories,
        "retried": retried,
        "self_checks_failed": sorted(n for n, c in self_checks.items() if not c.get("ok")),
    }
    lines = render(summary)
    summary["report_lines"] = lines
    summary["report"] = "\n".join(lines)
    return summary


def describe_failure(failure: Mapping[str, Any]) -> str:
    src = failure["source"]
    dst = failure["target"]
    what = {
        "pod_pod": ("pod on %s -> pod on %s" % (src, dst)) if src != dst else (
            "pod on %s -> second pod on %s" % (src, dst)),
        "node_pod": "node %s -> pod on %s" % (src, dst),
        "pod_node": "pod on %s -> node %s" % (src, dst),
        "egress": "pod on %s -> external" % src,
    }[failure["check"]]
    category = failure.get("category")
    return "%s %s (%s): %s%s" % (FAMILY_NAMES[failure["family"]], what, failure.get("address") or "-",
                                 "[%s] " % category if category else "", failure["reason"])


def sampling_line(sampling: Mapping[str, Any]) -> str:
    """One line saying which probes ran: the full matrix, or a sample with its seed and rotation."""
    if not sampling:
        return "Probes: full matrix"
    if sampling.get("mode") != "sampled":
        return "Probes: %s" % sampling.get("why", "full matrix")
    text = "Probes: %s, seed %s" % (sampling.get("why"), sampling.get("seed"))
    rotations = int(sampling.get("rotations") or 1)
    if rotations > 1:
        text += (" (rotation %d of %d: the seeds 0 to %d together cover every pair of nodes of a segment"
                 % (int(sampling.get("rotation") or 0), rotations, rotations - 1))
        text += " and every pair of segments)" if int(sampling.get("segments") or 1) > 1 else ")"
    text += "; every node is a source and a target of every check. Set podnet_verify_seed to repeat a run."
    return text


def _table(rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths))).rstrip() for row in rows]


def render(summary: Mapping[str, Any]) -> List[str]:
    """The report as text lines.

    Up to :data:`REPORT_MATRIX_MAX` nodes: the endpoints, then one matrix per check and family (rows =
    source, columns = target; ``-`` = not probed in a sampled run). Above: one line per check and family
    (N of M ok) and the failing cells only, grouped by source node. Then the failures and the verdict.
    """
    lines: List[str] = [sampling_line(summary.get("sampling") or {})]
    big = len(summary.get("nodes") or []) > REPORT_MATRIX_MAX
    endpoints = summary.get("endpoints") or {}
    if endpoints and not big:
        rows = [["node", "probe pod", "second pod", "node IPs"]]
        for name, info in endpoints.items():
            pod = ", ".join(info["pod_ips"]) or "(no probe pod)"
            if info.get("pod_mode"):
                pod += " (%s)" % info["pod_mode"]
            peer = ", ".join(info.get("peer_ips") or []) or "(no second pod)"
            rows.append([str(name), pod, peer, ", ".join(info["node_ips"]) or "-"])
        lines.append("")
        lines.extend(_table(rows))
    lines.append("")
    for matrix in summary["checks"]:
        status = "all ok" if matrix["ok_count"] == matrix["total"] else "%d FAILED" % (
            matrix["total"] - matrix["ok_count"])
        lines.append("%s: %d of %d ok%s" % (matrix["title"], matrix["ok_count"], matrix["total"],
                                            "" if status == "all ok" else ", " + status))
        if big:
            continue
        header = ["from \\ to"] + [str(t) for t in matrix["targets"]]
        rows = [header]
        for src in matrix["sources"]:
            row = [str(src)]
            for dst in matrix["targets"]:
                row.append(matrix["rows"].get(src, {}).get(dst, "-"))
            rows.append(row)
        lines.extend(_table(rows))
        lines.append("")
    if big:
        lines.append("")
    if summary.get("retried"):
        lines.append("%d probes answered only when tried again (the first attempt got no answer in time)"
                     % summary["retried"])
    if summary["failures"]:
        cats = summary.get("categories") or {}
        lines.append("FAILED: %d of %d probes (%s)" % (summary["failed_count"], summary["total"], ", ".join(
            "%d %s" % (cats[c], c) for c in CATEGORIES if cats.get(c))))
        if cats.get("harness") or cats.get("capacity"):
            lines.append("  (harness: verify's own probe servers did not serve; capacity: the node's kernel "
                         "could not hold a neighbour entry; network: the pod network itself)")
        if big:
            by_source: Dict[str, List[Mapping[str, Any]]] = {}
            for failure in summary["failures"]:
                by_source.setdefault(failure["source"], []).append(failure)
            for source in ordered(by_source):
                items = by_source[source]
                lines.append("  from %s: %d failed" % (source, len(items)))
                for failure in items:
                    lines.append("    - " + describe_failure(failure))
        else:
            for failure in summary["failures"]:
                lines.append("  - " + describe_failure(failure))
    else:
        lines.append("PASSED: %d of %d probes ok" % (summary["ok_count"], summary["total"]))
    return lines
