# SPDX-License-Identifier: Apache-2.0
"""The plan as a table and as JSON (plugins/plugin_utils/plan_report.py), from real plans of the planner."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import NodeInput, PlanConfig, make_plan
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_report import export, table

CONFIG = PlanConfig(cluster_cidrs=["10.81.0.0/22", "fd00:81::/60"], node_prefix_ipv4=25, keep_absent=True)


def nodes(*names):
    return [NodeInput(name=n, node_ip=["192.168.7.%d/24" % (10 + i), "fd07::%d/64" % (10 + i)])
            for i, n in enumerate(names)]


def registered(result, state_file="/x/.podnet_state.yml"):
    """The plan as the action registers it."""
    return dict(result.as_dict(), added=result.added, released=result.released, absent=result.absent,
                state_file=state_file)


def test_table_shows_fabric_capacity_marks_and_departed_nodes():
    first = make_plan(CONFIG, nodes("db", "web", "cache"))
    second = make_plan(CONFIG, nodes("db", "web", "queue"), first.state)   # cache left, queue joins
    text = table(registered(second), "router", ["rt-1", "rt-2"])
    lines = text.splitlines()
    assert lines[0] == "podnet.cluster plan: fabric router; routers: rt-1, rt-2"
    assert "  IPv4 10.81.0.0/22: 4 of 8 /25 blocks used (1 by departed nodes)" in lines
    assert "  IPv6 fd00:81::/60: 4 of 16 /64 blocks used (1 by departed nodes)" in lines
    queue = [l for l in lines if " queue " in l]
    assert len(queue) == 1 and queue[0].startswith("+") and queue[0].endswith("(new)")
    # one line per family: the node's IPv6 block on the line under its IPv4 one, the node named once
    row = lines.index(queue[0])
    assert "fd00:81:0:3::/64" in lines[row + 1] and "queue" not in lines[row + 1]
    assert "Departed nodes still holding blocks (release them with podnet_release_nodes):" in lines
    assert "  cache  10.81.0.0/25, fd00:81::/64" in lines
    assert not any(" db " in l and l.startswith(("+", "~")) for l in lines)


def test_changed_rows_and_the_export():
    first = make_plan(CONFIG, nodes("db", "web"))
    moved = make_plan(PlanConfig(cluster_cidrs=["10.82.0.0/22"], node_prefix_ipv4=25, allow_readdress=True),
                      nodes("db", "web"), first.state)
    text = table(registered(moved), "l2_routes", [])
    assert all(l.startswith("~") for l in text.splitlines() if " db " in l or " web " in l)
    doc = export(registered(moved), "l2_routes", [])
    assert doc["nodes"]["db"]["status"] == "changed" and doc["nodes"]["db"]["pod_cidrs"] == ["10.82.0.0/25"]
    assert doc["capacity"] == [{"family": "IPv4", "cluster_cidr": "10.82.0.0/22", "node_prefix": 25, "total": 8,
                                "used": 2, "departed": 0}]
    assert table(registered(moved), "router", []).splitlines()[0].endswith("(no routers in the inventory)")
