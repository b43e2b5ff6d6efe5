# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The benchmark harness's pure parts (bench/benchlib.py) on tiny inputs, so they cannot rot unnoticed.

No timing is asserted here: the benchmark itself runs with `make bench`.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))

import benchlib as lib  # noqa: E402


def timing(*samples, cap=None):
    t = lib.Timing(samples=list(samples))
    if cap is not None:
        t.capped, t.cap = True, cap
    return t


def test_inventory_has_every_host_with_a_distinct_node_ip_outside_the_cluster():
    inv = lib.generate_inventory(5, "podnet-bench-0-absent", cluster_cidr="10.128.0.0/9", node_network="10.0.0.0/16")
    group = inv["all"]["children"]["podnet_nodes"]
    assert list(group["hosts"]) == ["bench-00001", "bench-00002", "bench-00003", "bench-00004", "bench-00005"]
    ips = [ipaddress.ip_interface(h["podnet_node_ip"]) for h in group["hosts"].values()]
    assert [str(i) for i in ips] == ["10.0.0.1/16", "10.0.0.2/16", "10.0.0.3/16", "10.0.0.4/16", "10.0.0.5/16"]
    assert not any(i.ip in ipaddress.ip_network("10.128.0.0/9") for i in ips)
    assert group["vars"] == {"podnet_cluster_cidrs": ["10.128.0.0/9"], "podnet_node_prefix_ipv4": 24}
    # No host can be reached: every task that needs a connection goes into a namespace that does not exist.
    assert inv["all"]["vars"]["ansible_connection"] == "podnet.lab.netns"
    assert inv["all"]["vars"]["podnet_netns"] == "podnet-bench-0-absent"


def test_inventory_is_valid_for_ansible(tmp_path):
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(lib.generate_inventory(3, "podnet-bench-0-absent")))
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"],
                         capture_output=True, text=True, check=True, cwd=str(REPO)).stdout
    data = json.loads(out)
    assert sorted(data["podnet_nodes"]["hosts"]) == ["bench-00001", "bench-00002", "bench-00003"]
    assert data["_meta"]["hostvars"]["bench-00003"]["podnet_node_ip"] == "10.0.0.3/16"


def test_inventory_refuses_sizes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"holds 4 /24 blocks \(2\^\(24-22\)\), fewer than the 5 hosts"):
        lib.generate_inventory(5, "x", cluster_cidr="10.128.0.0/22")
    with pytest.raises(ValueError, match="node network 10.0.0.0/29 has 6 host addresses"):
        lib.generate_inventory(7, "x", node_network="10.0.0.0/29")
    with pytest.raises(ValueError, match="overlaps"):
        lib.generate_inventory(3, "x", node_network="10.128.0.0/16")
    with pytest.raises(ValueError, match="at least 1"):
        lib.generate_inventory(0, "x")


def test_host_names_sort_naturally():
    names = lib.host_names(12)
    assert names == sorted(names) and len(set(names)) == 12
    assert lib.host_names(123456)[-1] == "bench-123456"


def test_peer_routes_are_on_link_and_distinct():
    routes = lib.peer_routes(3, "10.0.0.1/16")
    assert routes == [("10.128.0.0/24", "10.0.0.2", "peer-00001"), ("10.128.1.0/24", "10.0.0.3", "peer-00002"),
                      ("10.128.2.0/24", "10.0.0.4", "peer-00003")]
    with pytest.raises(ValueError, match="room for 5 peers"):
        lib.peer_routes(6, "10.0.0.1/29")


def test_baseline_plays_have_the_asked_number_of_tasks():
    play = lib.set_fact_play(4)[0]
    assert play["hosts"] == "podnet_nodes" and play["gather_facts"] is False
    assert [list(t)[1] for t in play["tasks"]] == ["ansible.builtin.set_fact"] * 4
    assert len({json.dumps(t) for t in play["tasks"]}) == 4
    assert [list(t)[1] for t in lib.ping_play(3, "podnet_nodes")[0]["tasks"]] == ["ansible.builtin.ping"] * 3
    with pytest.raises(ValueError):
        lib.set_fact_play(0)


def test_per_host_task_count_leaves_run_once_tasks_out():
    # The first host also got the results of two run_once tasks.
    assert lib.per_host_task_count({"a": 5, "b": 3, "c": 3, "d": 3}) == 3
    assert lib.per_host_task_count({"a": 4}) == 4
    assert lib.per_host_task_count({"a": 2, "b": 3}) == 3
    with pytest.raises(ValueError, match="no task results"):
        lib.per_host_task_count({})


def test_parse_recap():
    text = ("PLAY RECAP *****\nnode-1   : ok=3    changed=1    unreachable=0    failed=0    skipped=2\n"
            "node-2   : ok=3    changed=0    unreachable=0    failed=0    skipped=2\n")
    assert lib.parse_recap(text) == {
        "node-1": {"ok": 3, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 2},
        "node-2": {"ok": 3, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 2}}


def test_ratio_rows_judge_medians_and_stopped_runs():
    row = lib.ratio_row("plan, 500 hosts", timing(30.0, 31.0, 90.0), timing(20.0), 1.5, "3 set_fact")
    assert (row.ours, row.baseline, row.compared, row.met) == (
        "31.0 s (median of 3)", "3 set_fact: 20.0 s", "1.55x", "NO")
    assert lib.ratio_row("x", timing(29.0), timing(20.0), 1.5).met == "yes"
    stopped = lib.ratio_row("x", timing(cap=60.0), timing(20.0), 1.5)
    assert (stopped.ours, stopped.compared, stopped.met) == ("> 60.0 s (stopped)", "> 3.00x", "NO")
    # A stopped run whose bound does not decide the target decides nothing.
    assert lib.ratio_row("x", timing(cap=25.0), timing(20.0), 1.5).met == "unknown"


def test_diff_rows_and_growth():
    row = lib.diff_row("routes, no change", timing(1.2, 1.1, 1.3), timing(0.8, 0.9, 0.85), 0.3, "1 ping")
    assert (row.compared, row.met) == ("+0.35 s", "NO")
    assert lib.diff_row("x", timing(1.0), timing(0.8), 0.3).met == "yes"
    ours = {500: timing(30.0), 5000: timing(600.0)}
    base = {500: timing(10.0), 5000: timing(90.0)}
    assert lib.growth(500, ours[500], 5000, ours[5000]) == pytest.approx(2.0)
    row = lib.growth_row("plan, growth", 500, 5000, ours, base, 1.5)
    assert (row.ours, row.baseline, row.met) == ("2.00", "0.90", "NO")


def test_memory_rows():
    assert lib.memory_row("m", 600 * lib.MIB, lib.GIB, False, "").met == "yes"
    assert lib.memory_row("m", 2 * lib.GIB, lib.GIB, False, "").ours == "2.00 GiB"
    assert lib.memory_row("m", 2 * lib.GIB, lib.GIB, True, "").met == "NO"
    assert lib.memory_row("m", 600 * lib.MIB, lib.GIB, True, "").met == "unknown"
    assert lib.memory_row("m", None, lib.GIB, False, "not run").ours == "not measured"


def test_table_is_one_aligned_markdown_table():
    rows = [lib.ratio_row("plan playbook, 500 hosts", timing(31.0), timing(20.0), 1.5, "3 set_fact"),
            lib.diff_row("routes, add all", timing(1.0), timing(0.8), 0.5, "1 ping")]
    lines = lib.format_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[0].split("|")[1].strip() == "item"
    assert set(lines[1]) <= {"|", "-"}
    assert len({len(line) for line in lines}) == 1
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells == ["plan playbook, 500 hosts", "31.0 s", "3 set_fact: 20.0 s", "1.55x", "<= 1.5x", "NO", ""]
    assert lib.summary(rows) == "targets met: 1, missed: 1, unknown or not run: 0"
    with pytest.raises(ValueError, match="holds '|'"):
        lib.format_table([lib.Row("a|b", "", "", "", "", "", "")])


def test_runner_counts_tasks_per_host_and_reads_memory(tmp_path):
    """The harness's own plumbing on a 3-host play: wrapper, counting callback, memory, exit status."""
    import bench  # noqa: E402  (bench/bench.py; imported here so that the pure tests above need nothing else)

    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps(lib.generate_inventory(3, "podnet-bench-0-absent")))
    play = lib.set_fact_play(2)
    play[0]["tasks"].append({"name": "Once", "ansible.builtin.debug": {"msg": "once"}, "run_once": True})
    play_file = tmp_path / "play.json"
    play_file.write_text(json.dumps(play))
    run = bench.Runner(bench.Config.from_env(), tmp_path).playbook("t", ["-i", str(inventory), str(play_file)])
    assert run.rc == 0, run.tail()
    assert not run.stopped
    assert run.counts["results"] == {"bench-00001": 3, "bench-00002": 2, "bench-00003": 2}
    assert lib.per_host_task_count(run.counts["results"]) == 2
    assert [t["name"] for t in run.counts["tasks"]] == ["Trivial fact 1", "Trivial fact 2", "Once"]
    assert run.main_maxrss and run.main_maxrss > 10 * lib.MIB
    assert run.any_maxrss >= run.main_maxrss
    assert "bench-00003" in lib.parse_recap(run.output)


def test_compare_state_names_each_node_and_aspect_that_differs_with_the_lines():
    import compare_state  # noqa: E402  (bench/ is on the path above)

    old = {"n1": {"ip -o addr": "a\nb\n", "files": "f 1\n"}, "n2": {"files": "x\n"}}
    same = {"n1": {"ip -o addr": "a\nb\n", "files": "f 1\n"}, "n2": {"files": "x\n"}}
    assert compare_state.compare(old, same) == []
    new = {"n1": {"ip -o addr": "a\nc\n", "files": "f 1\n"}, "n2": {"files": "x\n", "iptables-save": "-A X\n"}}
    out = compare_state.compare(old, new)
    assert out[0] == "n1: ip -o addr differs"
    assert "-b" in out and "+c" in out
    assert "n2: iptables-save differs" in out and "+-A X" in out
    assert not any(line.startswith("n1: files") or line.startswith("n2: files") for line in out)
    # the code copies of the boot restore are left out, nothing else (the restore program itself stays)
    files = ("etc/podnet dir 755\nvar-lib/podnet/lib dir 755\nvar-lib/podnet/lib/x.py 644 ab\n"
             "var-lib/podnet/podnet-restore 755 cd\n")
    assert compare_state.without_code(files) == ("etc/podnet dir 755\nvar-lib/podnet/lib dir 755\n"
                                                 "var-lib/podnet/podnet-restore 755 cd\n")


def test_compare_state_compares_the_uplink_snapshot_by_content_without_the_kernels_random_addresses():
    import compare_state  # noqa: E402  (bench/ is on the path above)

    snap = ('{"links": {"cbr0": {"address": "5e:aa:01:02:03:04"}, "eth0": {"address": "5E:AA:01:02:03:04"}},\n'
            ' "addresses": {"eth0": [{"local": "fe80::5caa:1ff:fe02:304"}, {"local": "172.31.250.11"}]}}\n')
    other_lab = snap.replace("5e:aa:01:02:03:04", "0a:bb:cc:dd:ee:ff").replace("5E:AA:01:02:03:04", "0a:bb:cc:dd:ee:ff")
    other_lab = other_lab.replace("fe80::5caa:1ff:fe02:304", "fe80::8bb:ccff:fedd:eeff")
    assert compare_state.without_random_addresses(snap) == compare_state.without_random_addresses(other_lab)
    assert '"cbr0": {"address": "<mac 1>"}, "eth0": {"address": "<mac 1>"}' in \
        compare_state.without_random_addresses(snap)
    # the bridge keeping a MAC of its own instead of the uplink's is a difference, as is any other value
    own_mac = snap.replace('"cbr0": {"address": "5e:aa:01:02:03:04"}', '"cbr0": {"address": "02:00:00:00:00:01"}')
    assert compare_state.without_random_addresses(own_mac) != compare_state.without_random_addresses(snap)
    moved = snap.replace("172.31.250.11", "172.31.250.12")
    assert compare_state.without_random_addresses(moved) != compare_state.without_random_addresses(snap)
    files = "etc/podnet dir 755\netc/podnet/uplink-cbr0.json 644 ab12\netc/sysctl.d/90-podnet-cluster.conf 644 cd\n"
    assert compare_state.without_checksum_of_uplink(files) == ("etc/podnet dir 755\netc/podnet/uplink-cbr0.json 644\n"
                                                               "etc/sysctl.d/90-podnet-cluster.conf 644 cd\n")


def test_compare_state_compares_the_clouds_route_table_without_ids_and_times_and_can_fail():
    import compare_state  # noqa: E402  (bench/ is on the path above)
    from lib.gce_standin import GceStandIn

    def table(**changes):
        with GceStandIn(project="p", token="t") as standin:
            standin.add_route("podnet-10-88-1-0-24", "10.88.1.0/24", instance=changes.get("hop", "node1"),
                              priority=changes.get("priority", 1000), description="podnet.cluster pod route (podnet)")
            standin.add_route("podnet-10-88-0-0-24", "10.88.0.0/24", instance="node2",
                              description="podnet.cluster pod route (podnet)")
            return standin.route_table()

    first, again = table(), table()
    again["podnet-10-88-1-0-24"].update(id="99999", creationTimestamp="2030-01-01T00:00:00Z")
    text = compare_state.cloud_routes(first)
    assert text.splitlines()[0].startswith(
        "podnet-10-88-0-0-24 10.88.0.0/24 via nextHopInstance "
        "https://www.googleapis.com/compute/v1/projects/p/zones/lab-a/instances/node2 priority 1000 network ")
    assert compare_state.cloud_routes(again) == text
    old = {compare_state.CLOUD: {"routes": text}}
    assert compare_state.compare(old, {compare_state.CLOUD: {"routes": compare_state.cloud_routes(again)}}) == []
    for changed in (table(hop="node3"), table(priority=900), {k: v for k, v in first.items() if "1-0" in k}):
        out = compare_state.compare(old, {compare_state.CLOUD: {"routes": compare_state.cloud_routes(changed)}})
        assert out[0] == "gce-api: routes differs"
        assert any(line.startswith("-podnet-10-88-") for line in out)
