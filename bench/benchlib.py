# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Pure helpers of the scale benchmark (bench/bench.py): inventories, task counts, judging, the table.

Nothing here runs a process or touches the machine, so tests/unit/bench/ can check all of it quickly.
"""

from __future__ import annotations

import ipaddress
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

MIB = 1024 * 1024
GIB = 1024 * MIB


# --- Inventories -------------------------------------------------------------------------------------------

def host_names(count: int) -> List[str]:
    """Names of a generated inventory's hosts: bench-00001 ... (natural order equals text order)."""
    width = max(5, len(str(count)))
    return ["bench-%0*d" % (width, i) for i in range(1, count + 1)]


def generate_inventory(count: int, absent_netns: str, cluster_cidr: str = "10.128.0.0/9", node_prefix: int = 24,
                       node_network: str = "10.0.0.0/16", group: str = "podnet_nodes") -> Dict[str, object]:
    """A YAML/JSON inventory of ``count`` plan-ready hosts that no task can ever reach.

    Every host has its node IP (``podnet_node_ip``, the next address of ``node_network``), so the plan needs no
    connection and gathers no facts. The connection is podnet.lab.netns into ``absent_netns``, a namespace
    that must not exist: a task that does try to run something on a host fails at once instead of sending
    traffic anywhere (a wrong playbook given to the benchmark cannot touch this machine or the network).
    """
    if count < 1:
        raise ValueError("inventory size must be at least 1, got %d" % count)
    cluster = ipaddress.ip_network(cluster_cidr)
    nodes = ipaddress.ip_network(node_network)
    if node_prefix < cluster.prefixlen or node_prefix > cluster.max_prefixlen:
        raise ValueError("node prefix /%d does not fit in the cluster network %s" % (node_prefix, cluster))
    blocks = 2 ** (node_prefix - cluster.prefixlen)
    if blocks < count:
        raise ValueError("cluster network %s holds %d /%d blocks (2^(%d-%d)), fewer than the %d hosts"
                         % (cluster, blocks, node_prefix, node_prefix, cluster.prefixlen, count))
    if nodes.num_addresses - 2 < count:
        raise ValueError("node network %s has %d host addresses, fewer than the %d hosts"
                         % (nodes, nodes.num_addresses - 2, count))
    if nodes.overlaps(cluster):
        raise ValueError("node network %s overlaps the cluster network %s" % (nodes, cluster))
    hosts = {}
    for i, name in enumerate(host_names(count), start=1):
        hosts[name] = {"podnet_node_ip": "%s/%d" % (nodes.network_address + i, nodes.prefixlen)}
    return {
        "all": {
            "vars": {
                "ansible_connection": "podnet.lab.netns",
                "podnet_netns": absent_netns,
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {
                group: {
                    "hosts": hosts,
                    "vars": {
                        "podnet_cluster_cidrs": [str(cluster)],
                        "podnet_node_prefix_ipv4": node_prefix,
                    },
                },
            },
        },
    }


def set_fact_play(tasks: int, group: str = "podnet_nodes") -> List[Dict[str, object]]:
    """The baseline: one play of ``tasks`` trivial set_fact tasks on every host of ``group``."""
    if tasks < 1:
        raise ValueError("the baseline needs at least one task, got %d" % tasks)
    return [{
        "name": "Baseline: %d trivial set_fact tasks" % tasks,
        "hosts": group,
        "gather_facts": False,
        "tasks": [{"name": "Trivial fact %d" % i, "ansible.builtin.set_fact": {"bench_fact_%d" % i: True}}
                  for i in range(1, tasks + 1)],
    }]


def ping_play(tasks: int, hosts: str) -> List[Dict[str, object]]:
    """The baseline of converge and routes: ``tasks`` ansible.builtin.ping tasks on ``hosts``."""
    return [{
        "name": "Baseline: %d ping tasks" % tasks,
        "hosts": hosts,
        "gather_facts": False,
        "tasks": [{"name": "Ping %d" % i, "ansible.builtin.ping": {}} for i in range(1, tasks + 1)],
    }]


def peer_routes(count: int, on_link: str, cluster_cidr: str = "10.128.0.0/9", prefix: int = 24
                ) -> List[Tuple[str, str, str]]:
    """``count`` peer routes (dst, via, peer) of a node whose address is ``on_link`` (e.g. 10.0.0.1/16).

    Destinations are consecutive /``prefix`` blocks of ``cluster_cidr``; gateways are the next addresses of
    the node's own network after the node (so every peer is on-link).
    """
    node = ipaddress.ip_interface(on_link)
    blocks = ipaddress.ip_network(cluster_cidr).subnets(new_prefix=prefix)
    first = int(node.ip) + 1
    last = int(node.network.broadcast_address) - 1
    if first + count - 1 > last:
        raise ValueError("network %s has room for %d peers after %s, not %d"
                         % (node.network, max(0, last - first + 1), node.ip, count))
    out = []
    for i in range(count):
        try:
            dst = next(blocks)
        except StopIteration:
            raise ValueError("cluster network %s holds fewer than %d /%d blocks" % (cluster_cidr, count, prefix))
        out.append((str(dst), str(ipaddress.ip_address(first + i)), "peer-%05d" % (i + 1)))
    return out


# --- Reading a run ---------------------------------------------------------------------------------------

def per_host_task_count(results: Dict[str, int]) -> int:
    """How many tasks a play ran per host: the most common number of results a host received.

    ``results`` maps each host to the number of task results it got (ok, changed, skipped, failed,
    unreachable; one per task, not per loop item). A run_once task gives a result to one host only, so it
    is not a per-host task and the most common count leaves it out. Ties go to the larger count.
    """
    if not results:
        raise ValueError("the run reported no task results; was the playbook empty or did it fail to start?")
    counts = Counter(results.values())
    best = max(counts.values())
    return max(n for n, seen in counts.items() if seen == best)


RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.M)


def parse_recap(stdout: str) -> Dict[str, Dict[str, int]]:
    """PLAY RECAP lines of the default callback as {host: {ok: n, changed: n, ...}}."""
    found: Dict[str, Dict[str, int]] = {}
    for host, counts in RECAP_LINE.findall(stdout):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


# --- Measurements and judging ------------------------------------------------------------------------------

@dataclass
class Timing:
    """Wall-clock seconds of the runs of one measurement. ``capped``: a run was stopped at ``cap`` seconds."""

    samples: List[float] = field(default_factory=list)
    capped: bool = False
    cap: float = 0.0

    @property
    def value(self) -> float:
        """The median of the complete runs; when a run hit the cap, the cap (a lower bound)."""
        if self.capped:
            return self.cap
        if not self.samples:
            raise ValueError("no samples")
        return statistics.median(self.samples)

    def text(self, label: str = "") -> str:
        """'12.3 s (median of 3)', '> 60.0 s (stopped)'; with a label: '3 set_fact: 12.3 s ...'."""
        prefix = label + ": " if label else ""
        if self.capped:
            return prefix + "> %s (stopped)" % seconds_text(self.cap)
        text = prefix + seconds_text(self.value)
        if len(self.samples) > 1:
            text += " (median of %d)" % len(self.samples)
        return text


def seconds_text(seconds: float) -> str:
    if seconds < 10:
        return "%.2f s" % seconds
    return "%.1f s" % seconds


@dataclass
class Row:
    item: str
    ours: str
    baseline: str
    compared: str
    target: str
    met: str
    note: str = ""


def met_text(met: Optional[bool]) -> str:
    return {True: "yes", False: "NO", None: "unknown"}[met]


def ratio_row(item: str, ours: Timing, base: Timing, limit: float, base_label: str = "") -> Row:
    """ours/base against a ratio target (ratio <= limit). A stopped run makes the ratio a bound."""
    target = "<= %.1fx" % limit
    baseline = base.text(base_label)
    if base.capped and ours.capped:
        return Row(item, ours.text(), baseline, "?", target, met_text(None), "both runs stopped")
    if base.capped:  # ours complete, base a lower bound: ratio is an upper bound
        ratio = ours.value / base.value
        return Row(item, ours.text(), baseline, "< %.2fx" % ratio, target,
                   met_text(True if ratio <= limit else None))
    ratio = ours.value / base.value
    if ours.capped:  # a lower bound of the ratio
        return Row(item, ours.text(), baseline, "> %.2fx" % ratio, target,
                   met_text(False if ratio > limit else None))
    return Row(item, ours.text(), baseline, "%.2fx" % ratio, target, met_text(ratio <= limit))


def diff_row(item: str, ours: Timing, base: Timing, limit: float, base_label: str = "") -> Row:
    """ours - base against a difference target (difference <= limit seconds)."""
    target = "<= +%.1f s" % limit
    baseline = base.text(base_label)
    if ours.capped or base.capped:
        return Row(item, ours.text(), baseline, "?", target, met_text(None), "a run was stopped")
    diff = ours.value - base.value
    return Row(item, ours.text(), baseline, "%+.2f s" % diff, target, met_text(diff <= limit))


def growth(small_hosts: int, small: Timing, large_hosts: int, large: Timing) -> float:
    """Time per host at the large size divided by time per host at the small size (1.0 = linear)."""
    return (large.value / large_hosts) / (small.value / small_hosts)


def growth_row(item: str, small_hosts: int, large_hosts: int, ours: Dict[int, Timing], base: Dict[int, Timing],
               limit: float) -> Row:
    """Linearity: per-host time at the largest size over the smallest; target: at most ``limit``."""
    target = "<= %.1f (linear)" % limit
    mine = growth(small_hosts, ours[small_hosts], large_hosts, ours[large_hosts])
    theirs = growth(small_hosts, base[small_hosts], large_hosts, base[large_hosts])
    bound = ours[large_hosts].capped or ours[small_hosts].capped
    if ours[small_hosts].capped:
        ours_text, met = "?", None
    elif bound:
        ours_text, met = "> %.2f" % mine, (False if mine > limit else None)
    else:
        ours_text, met = "%.2f" % mine, mine <= limit
    base_text = "%.2f" % theirs if not (base[small_hosts].capped or base[large_hosts].capped) else "?"
    return Row(item, ours_text, base_text, "", target, met_text(met),
               "s/host at %s over s/host at %s" % (count_text(large_hosts), count_text(small_hosts)))


def memory_row(item: str, peak_bytes: Optional[int], limit_bytes: int, lower_bound: bool, note: str) -> Row:
    target = "< %s" % bytes_text(limit_bytes)
    if peak_bytes is None:
        return Row(item, "not measured", "", "", target, met_text(None), note)
    text = ("> " if lower_bound else "") + bytes_text(peak_bytes)
    if lower_bound:
        met: Optional[bool] = False if peak_bytes >= limit_bytes else None
    else:
        met = peak_bytes < limit_bytes
    return Row(item, text, "", "", target, met_text(met), note)


def skipped_row(item: str, target: str, why: str) -> Row:
    return Row(item, "not run", "", "", target, met_text(None), why)


def bytes_text(value: int) -> str:
    if value >= GIB:
        return "%.2f GiB" % (value / GIB)
    return "%.0f MiB" % (value / MIB)


def count_text(n: int) -> str:
    return "{:,}".format(n)


# --- The table ---------------------------------------------------------------------------------------------

COLUMNS = ("item", "ours", "baseline", "ours vs baseline", "target", "met", "note")


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (aligned, so it reads in a terminal too), one line per row."""
    if not rows:
        raise ValueError("no rows")
    cells = [list(COLUMNS)] + [[r.item, r.ours, r.baseline, r.compared, r.target, r.met, r.note] for r in rows]
    for line in cells:
        for text in line:
            if "|" in text or "\n" in text:
                raise ValueError("table cell %r holds '|' or a line break" % text)
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def render(line: Iterable[str]) -> str:
        return "| " + " | ".join(text.ljust(w) for text, w in zip(line, widths)) + " |"

    out = [render(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(render(line) for line in cells[1:])
    return "\n".join(out)


def summary(rows: Sequence[Row]) -> str:
    """One line: how many targets were met, missed, unknown."""
    judged = Counter(r.met for r in rows)
    return "targets met: %d, missed: %d, unknown or not run: %d" % (
        judged.get("yes", 0), judged.get("NO", 0), judged.get("unknown", 0))
