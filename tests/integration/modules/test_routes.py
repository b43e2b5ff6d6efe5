# SPDX-License-Identifier: Apache-2.0
"""podnet.cluster.routes, run by ansible-playbook inside two namespaces joined by a veth."""

from __future__ import annotations

from modtest_lib import failed, ok

M = "podnet.cluster.routes"


def ours(ns, family=4, proto=158):
    """{dst: (gateway, dev)} of the routes with our protocol, read back from the kernel."""
    return {r["dst"]: (r.get("gateway"), r.get("dev")) for r in ns.routes(family, proto=proto)}


def test_add_check_idempotent_replace_and_stale(node_pair):
    node, _peer = node_pair
    # a stale route of ours (node removed from the cluster) and a foreign one that must survive
    node.ip("route", "add", "10.244.9.0/24", "via", "192.168.0.9", "proto", "158")
    node.ip("route", "add", "10.50.0.0/24", "via", "192.168.0.50", "proto", "static")
    routes = [
        {"dst": "10.244.2.0/24", "via": "192.168.0.2", "peer": "node2"},
        {"dst": "10.244.3.0/24", "via": "192.168.0.3", "peer": "node3"},
        {"dst": "fd00:10:244:2::/64", "via": "fd00:77::2", "peer": "node2"},
    ]
    args = {"node": "node1", "routes": routes}
    check, first, second = node.play([
        {M: args, "check_mode": True},
        {M: args},
        {M: args},
    ])
    ok(check), ok(first), ok(second)
    assert check["changed"] and len(check["added"]) == 3
    assert check["commands"]["4"][0] == "route del 10.244.9.0/24 proto 158 table main"
    assert "route add 10.244.2.0/24 via 192.168.0.2 dev eth0 proto 158 table main" in check["commands"]["4"]
    # the real run after the check run still had everything to do: check mode wrote nothing
    assert first["changed"] and first["added"] == check["added"] and first["removed"] == check["removed"]
    assert [r["dst"] for r in first["removed"]] == ["10.244.9.0/24"]
    assert first["diff"]["before"] == "10.244.9.0/24 via 192.168.0.9 dev eth0\n"
    assert first["diff"]["after"] == ("10.244.2.0/24 via 192.168.0.2 dev eth0\n10.244.3.0/24 via 192.168.0.3 dev eth0\n"
                                      "fd00:10:244:2::/64 via fd00:77::2 dev eth0\n")
    assert second["changed"] is False and second["commands"] == {"4": [], "6": []}
    assert ours(node, 4) == {"10.244.2.0/24": ("192.168.0.2", "eth0"), "10.244.3.0/24": ("192.168.0.3", "eth0")}
    assert ours(node, 6) == {"fd00:10:244:2::/64": ("fd00:77::2", "eth0")}
    assert [r["dst"] for r in node.routes(4) if r.get("protocol") == "static"] == ["10.50.0.0/24"]

    # node3 moved to another address; node2's IPv6 route went away
    moved = {"node": "node1", "routes": [routes[0], {"dst": "10.244.3.0/24", "via": "192.168.0.33", "peer": "node3"}]}
    res = ok(node.module(M, moved))
    assert res["changed"] and res["added"] == []
    assert [(r["dst"], r["via"], r["old"]) for r in res["replaced"]] == [
        ("10.244.3.0/24", "192.168.0.33", "10.244.3.0/24 via 192.168.0.3 dev eth0")]
    assert [r["dst"] for r in res["removed"]] == ["fd00:10:244:2::/64"]
    assert ours(node, 4) == {"10.244.2.0/24": ("192.168.0.2", "eth0"), "10.244.3.0/24": ("192.168.0.33", "eth0")}
    assert ours(node, 6) == {}

    gone = ok(node.module(M, {"state": "absent"}))
    assert gone["changed"] and len(gone["removed"]) == 2
    assert ours(node, 4) == {} and ours(node, 6) == {}
    assert [r["dst"] for r in node.routes(4) if r.get("protocol") == "static"] == ["10.50.0.0/24"]


def test_errors_not_onlink_foreign_route_and_bad_input(node_pair):
    node, _peer = node_pair
    node.ip("route", "add", "10.244.5.0/24", "via", "192.168.0.5", "proto", "static")
    node.ip("route", "add", "10.244.7.0/24", "via", "192.168.0.7", "proto", "158")
    before4, before6 = ours(node, 4), ours(node, 6)
    good = {"dst": "10.244.2.0/24", "via": "192.168.0.2", "peer": "node2"}
    routed, unreachable, foreign, hostbits, self_via = node.play([
        # 10.99.1.5 is reachable only through the router 192.168.0.254: not L2-adjacent
        {M: {"node": "node1", "routes": [good, {"dst": "10.244.3.0/24", "via": "10.99.1.5", "peer": "node3"}]}},
        {M: {"node": "node1", "routes": [good, {"dst": "10.244.4.0/24", "via": "172.30.0.4", "peer": "node4"}]}},
        {M: {"node": "node1", "routes": [good, {"dst": "10.244.5.0/24", "via": "192.168.0.5", "peer": "node5"}]}},
        {M: {"node": "node1", "routes": [{"dst": "10.244.6.1/24", "via": "192.168.0.6", "peer": "node6"}]}},
        {M: {"node": "node1", "routes": [{"dst": "10.244.6.0/24", "via": "192.168.0.1", "peer": "node6"}]}},
    ])
    msg = failed(routed)
    assert "node1" in msg and "node3" in msg and "10.99.1.5" in msg and "via 192.168.0.254" in msg
    assert "podnet_fabric" in msg and "router" in msg and "gce" in msg
    assert "node2" not in msg
    msg = failed(unreachable)
    assert "node1" in msg and "node4" in msg and "172.30.0.4" in msg and "no route" in msg
    msg = failed(foreign)
    assert "10.244.5.0/24" in msg and "node5" in msg and "static" in msg and "never overwritten" in msg
    msg = failed(hostbits)
    assert "10.244.6.1/24" in msg and "host bits" in msg and "10.244.6.0/24" in msg
    msg = failed(self_via)
    assert "192.168.0.1" in msg and "node1" in msg
    # errors come before any write: our stale route 10.244.7.0/24 is still there, nothing was added
    assert ours(node, 4) == before4 == {"10.244.7.0/24": ("192.168.0.7", "eth0")}
    assert ours(node, 6) == before6 == {}
    assert [r["dst"] for r in node.routes(4) if r.get("protocol") == "static"] == ["10.244.5.0/24"]


def test_two_thousand_peers_one_call_then_nothing(node_pair):
    node, _peer = node_pair
    routes = []
    for i in range(2000):
        routes.append({"dst": "10.%d.%d.0/24" % (128 + i // 256, i % 256),
                       "via": "192.168.%d.%d" % (1 + i // 250, 1 + i % 250), "peer": "node%d" % i})
    for i in range(500):
        routes.append({"dst": "fd00:10:244:%x::/64" % (i + 1), "via": "fd00:77::%x" % (i + 16), "peer": "node%d" % i})
    args = {"node": "node0", "routes": routes}
    # drop 100 peers and move 50 for the third call: exactly those changes
    changed = [dict(r) for r in routes[100:2000]]
    for r in changed[:50]:
        r["via"] = r["via"].rsplit(".", 1)[0] + ".251"
    third_args = {"node": "node0", "routes": changed + routes[2000:]}
    first, second, third = node.play([{M: args}, {M: args}, {M: third_args}], diff=False, timeout=300)
    ok(first), ok(second), ok(third)
    assert first["changed"] and first["added_count"] == 2500 and first["routes"] == 2500
    assert len(first["added"]) == 100, "without --diff the list is cut, the count is whole"
    assert "commands" not in first and "diff" not in first, "batch lines and diff come only with --diff"
    assert len(node.routes(4, proto=158)) == 1900 and len(node.routes(6, proto=158)) == 500  # after the third call
    assert second["changed"] is False and second["added"] == second["replaced"] == second["removed"] == []
    assert third["removed_count"] == 100 and third["replaced_count"] == 50 and third["added"] == []
    assert {r["dst"] for r in third["removed"]} == {r["dst"] for r in routes[:100]}
    v4, v6 = ours(node, 4), ours(node, 6)
    assert len(v4) == 1900 and len(v6) == 500
    assert "10.128.0.0/24" not in v4
    assert v4[changed[0]["dst"]] == (changed[0]["via"], "eth0")
    assert v4["10.135.207.0/24"] == ("192.168.8.250", "eth0")      # i = 1999
    assert v6["fd00:10:244:1f4::/64"] == ("fd00:77::203", "eth0")  # i = 499


def test_one_string_of_lines_and_a_short_echo(node_pair):
    node, _peer = node_pair
    lines = ["10.%d.%d.0/24 via 192.168.%d.%d peer node%d" % (128 + i // 256, i % 256, 1 + i // 250, 1 + i % 250, i)
             for i in range(150)]
    # a host route (the kernel prints it without /32) and a gateway not written canonically
    lines += ["10.250.0.7/32 via 192.168.0.7 peer host7", "fd00:10:244:a::/64 via FD00:77:0::2 peer v6"]
    text = "\n".join(lines) + "\n\n"
    first, again, as_list, check = node.play([
        {M: {"node": "node0", "routes": text}},
        {M: {"node": "node0", "routes": [text]}},
        {M: {"node": "node0", "routes": lines}},
        {M: {"node": "node0", "routes": lines[1:]}, "check_mode": True},
    ], diff=False)
    ok(first), ok(again), ok(as_list), ok(check)
    assert first["changed"] and first["added_count"] == 152 and first["routes"] == 152
    assert again["changed"] is False and as_list["changed"] is False, "the same routes, whatever their form"
    assert check["changed"] and check["removed_count"] == 1 and check["added_count"] == 0
    assert ours(node, 4)["10.250.0.7"] == ("192.168.0.7", "eth0")
    assert ours(node, 6) == {"fd00:10:244:a::/64": ("fd00:77::2", "eth0")}
    # without --diff the arguments echoed in the result are cut like the lists
    echoed = as_list["invocation"]["module_args"]["routes"]
    assert echoed[:100] == lines[:100] and echoed[100:] == ["... and 52 more"]
    with_diff = ok(node.module(M, {"node": "node0", "routes": lines}))
    assert with_diff["changed"] is False and with_diff["invocation"]["module_args"]["routes"] == lines
