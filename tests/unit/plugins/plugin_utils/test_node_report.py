# SPDX-License-Identifier: Apache-2.0
"""The readable report of a node's change (plugins/plugin_utils/node_report.py)."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.plugin_utils.node_report import readable_diff, summarize

LIB = "/opt/pn"
CHANGES = {
    "bridge cbr9": {"added": ["10.9.0.1/25"], "removed": ["10.9.0.1/24"]},
    "routes": {"replaced": ["a", "b", "c", "d", "e", "f"]},
    "file /opt/pn/podnet-restore": {"created": True},
    "file /opt/pn/lib/x.py": {"created": True},
    "file /opt/pn/lib/y.py": {"file_changed": True},
    "docker /etc/docker/daemon.json": {"set_keys": ["bridge"]},
    "record /etc/podnet/node.json": {"file_changed": True},
}


def test_summary_is_one_line_of_what_changes():
    line = summarize(CHANGES, LIB, docker_restart=True)
    assert line == ("bridge addresses changed, 6 routes replaced, daemon.json keys set, "
                    "restore program: 2 files created, 1 updated, Docker restart pending")
    assert summarize({}, LIB) == "no change"
    assert summarize({"routes": {"added": ["x"]}}, LIB) == "1 route added"


def test_diff_names_the_host_folds_the_restore_program_and_hides_the_record():
    diffs = [{"before_header": "%s: %s" % (name, name), "after_header": "%s: %s" % (name, name),
              "before": "", "after": "x\n"} for name in CHANGES]
    out = readable_diff("web-7", diffs, CHANGES, LIB, verbose=False, summary="S")
    headers = [d["before_header"] for d in out if "before_header" in d]
    assert headers == ["web-7: bridge cbr9: bridge cbr9", "web-7: routes: routes",
                       "web-7: docker /etc/docker/daemon.json: docker /etc/docker/daemon.json"]
    assert out[-2] == {"prepared": "web-7: restore program: 3 files created (/opt/pn)\n"}
    assert out[-1] == {"prepared": "web-7: S\n"}
    verbose = readable_diff("web-7", diffs, CHANGES, LIB, verbose=True)
    assert any(d.get("before_header", "").startswith("web-7: record ") for d in verbose)


def test_a_group_variable_mistake_is_told_once():
    from ansible_collections.podnet.cluster.plugins.action.node_state import cluster_wide
    hosts = ["n%d" % i for i in range(1, 8)]
    task_vars = {"hostvars": {h: {"podnet_bridge_mtu": "big"} for h in hosts}, "ansible_play_hosts_all": hosts,
                 "groups": {"podnet_nodes": hosts}}
    error = "host %s: podnet_bridge_mtu='big': 0 (the uplink's MTU) or 68..65535"
    first = cluster_wide(error % "n1", "n1", task_vars)
    assert first.startswith("hosts n1, n2, n3, n4, n5 and 2 more (every node of this run, the same value")
    assert first.endswith("podnet_bridge_mtu='big': 0 (the uplink's MTU) or 68..65535")
    assert cluster_wide(error % "n4", "n4", task_vars) == \
        "host n4: podnet_bridge_mtu: the same value as on every node, reported once by host n1"
    task_vars["hostvars"]["n7"]["podnet_bridge_mtu"] = 1500          # a host variable: told by its host
    assert cluster_wide(error % "n4", "n4", task_vars) == error % "n4"
