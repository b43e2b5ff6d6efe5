# SPDX-License-Identifier: Apache-2.0
"""The uplink move engine (plugins/module_utils/uplink.py): planning on decoded ``ip -json`` data.

``data/uplink_ip_json.json`` is real ``ip -N [-d] -json`` output of a namespace node (uplink eth0,
MTU 1450, two IPv4 addresses one with a label, two IPv6 addresses one noprefixroute, default
routes of both families, a route in table 100 with an MTU, routes with a source address, and a
second interface eth1) before and after the engine moved eth0 into br0; capture_uplink.py next to
it rebuilds it. The integration tests (tests/integration/test_uplink_bridge.py) run the same
plans on the real kernel.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils import uplink as U

DATA = json.loads((Path(__file__).parent / "data" / "uplink_ip_json.json").read_text())
MAC = "02:00:00:00:00:11"


def snap(which="before", bridge="br0", uplink="eth0"):
    raw = DATA[which]
    return U.snapshot_from_ip(raw["links"], raw["addresses"], raw["routes4"], raw["routes6"], bridge, uplink)


# --------------------------------------------------------------------------- snapshot


def test_snapshot_keeps_only_the_two_interfaces_and_no_local_table():
    before = snap()
    assert set(before["links"]) == {"eth0"}
    assert before["links"]["eth0"] == {"kind": "veth", "master": None, "mtu": 1450, "address": MAC, "up": True}
    assert [U.addr_id(a) for a in U.global_addresses(before, "eth0")] == [
        "10.1.0.11/24", "10.1.0.12/24", "fd00:2::11/64", "fd00::11/64"]
    assert all(str(r.get("table")) != "255" for r in before["routes"])
    assert all(r["dev"] == "eth0" for r in before["routes"])
    # the route through eth1 with a source address on eth0 is not the uplink's
    assert not [r for r in before["routes"] if r.get("dst") == "10.7.0.0/16"]
    after = snap("after")
    assert after["links"]["br0"]["ports"] == ["eth0"]
    assert after["links"]["eth0"]["master"] == "br0"


# --------------------------------------------------------------------------- plan_move


def test_plan_move_is_one_batch_in_a_safe_order():
    lines = U.plan_move(snap())
    assert lines[:3] == ["link add name br0 address %s mtu 1450 type bridge" % MAC,
                         "link set dev eth0 master br0", "link set dev br0 up"]
    adds = [line for line in lines if line.startswith("addr add")]
    assert adds == ["addr add 10.1.0.11/24 broadcast 10.1.0.255 dev br0",
                    "addr add 10.1.0.12/24 label br0:x dev br0",
                    "addr add fd00::11/64 nodad dev br0",
                    "addr add fd00:2::11/64 noprefixroute nodad dev br0"]
    # every address is on the bridge before any route moves, and taken off the uplink last
    first_route = min(i for i, line in enumerate(lines) if line.startswith("route"))
    assert max(i for i, line in enumerate(lines) if line.startswith("addr add")) < first_route
    assert all(line.startswith("addr del") for line in lines[-4:])
    assert lines[-4:] == ["addr del 10.1.0.12/24 dev eth0", "addr del 10.1.0.11/24 dev eth0",
                          "addr del fd00:2::11/64 dev eth0", "addr del fd00::11/64 dev eth0"]
    assert ("route add 0.0.0.0/0 via 10.1.0.1 table 254 proto 4 scope 0 metric 100 dev br0") in lines
    assert ("route del 0.0.0.0/0 via 10.1.0.1 table 254 proto 4 scope 0 metric 100 dev eth0") in lines
    assert "route add ::/0 via fd00::1 table 254 proto 3 metric 512 dev br0" in lines
    assert "route add 10.9.0.0/16 via 10.1.0.1 table 100 proto 3 scope 0 metric 0 mtu 1400 dev br0" in lines
    assert "route add 10.8.0.0/16 via 10.1.0.1 table 254 proto 3 scope 0 metric 0 src 10.1.0.12 dev br0" in lines
    # device routes before routes through a gateway
    dev_route = lines.index("route add fd00:2::/64 table 254 proto 3 metric 300 dev br0")
    assert all(dev_route < i for i, line in enumerate(lines) if line.startswith("route add") and " via " in line)
    # kernel routes of the addresses are not moved by hand
    assert not [line for line in lines if "10.1.0.0/24" in line or "fe80::/64" in line]


def test_plan_move_of_the_moved_state_is_empty():
    assert U.plan_move(snap("after")) == []
    assert U.is_moved(snap("after"))
    assert not U.is_moved(snap())


def test_simulated_move_matches_the_kernel():
    assert U.render(U.simulate_move(snap())) == U.render(snap("after"))
    assert U.plan_move(U.simulate_move(snap())) == []


def test_half_done_move_continues_where_it_stopped():
    # enslaved and one address moved, the rest still on the uplink (a batch that stopped midway)
    half = copy.deepcopy(snap())
    half["links"]["br0"] = {"kind": "bridge", "master": None, "mtu": 1450, "address": MAC, "up": True,
                            "ports": ["eth0"]}
    half["links"]["eth0"]["master"] = "br0"
    half["addresses"]["br0"] = [dict(half["addresses"]["eth0"][0])]
    lines = U.plan_move(half)
    assert not [line for line in lines if line.startswith("link")]
    assert "addr add 10.1.0.11/24 broadcast 10.1.0.255 dev br0" not in lines
    assert "addr add 10.1.0.12/24 label br0:x dev br0" in lines
    assert "addr del 10.1.0.11/24 dev eth0" in lines


def test_existing_bridge_takes_the_uplink_mac_and_mtu():
    before = copy.deepcopy(snap())
    before["links"]["br0"] = {"kind": "bridge", "master": None, "mtu": 1500, "address": "aa:bb:cc:dd:ee:ff",
                              "up": False, "ports": ["veth9"]}
    lines = U.plan_move(before)
    assert lines[:3] == ["link set dev br0 address %s mtu 1450" % MAC, "link set dev eth0 master br0",
                         "link set dev br0 up"]


@pytest.mark.parametrize("change, message", [
    (lambda s: s["links"].pop("eth0"), "uplink eth0 does not exist"),
    (lambda s: s["links"]["eth0"].update(master="cni0"), "already a port of cni0"),
    (lambda s: s["links"]["eth0"].update(kind="bridge"), "uplink eth0 is a bridge"),
    (lambda s: s["links"].update(br0={"kind": "veth", "mtu": 1500, "address": MAC, "up": True}),
     "br0 exists and is a veth, not a bridge"),
    (lambda s: s["routes"].append({"family": 4, "dst": "10.6.0.0/16", "dev": None, "protocol": "3",
                                   "nexthops": [{"gateway": "10.1.0.1", "dev": "eth0"},
                                                {"gateway": "10.1.0.2", "dev": "eth0"}]}),
     "10.6.0.0/16 table 254 proto 3 scope 0 metric 0 dev None is a multipath route"),
])
def test_plan_move_refuses_what_it_cannot_do(change, message):
    before = copy.deepcopy(snap())
    change(before)
    with pytest.raises(U.UplinkError) as info:
        U.plan_move(before)
    assert message in str(info.value)


@pytest.mark.parametrize("bridge, uplink, message", [
    ("eth0", "eth0", "both 'eth0'"),
    ("a-very-long-bridge-name", "eth0", "not a valid interface name"),
    ("br 0", "eth0", "not a valid interface name"),
])
def test_bad_names(bridge, uplink, message):
    with pytest.raises(U.UplinkError) as info:
        U.plan_move(snap(bridge=bridge, uplink=uplink))
    assert message in str(info.value)


# --------------------------------------------------------------------------- plan_restore


def test_restore_is_the_exact_reverse():
    before, after = snap(), snap("after")
    lines = U.plan_restore(before, after)
    assert lines[0] == "link set dev eth0 nomaster"
    assert lines[1:5] == ["addr add 10.1.0.11/24 broadcast 10.1.0.255 dev eth0",
                          "addr add 10.1.0.12/24 label eth0:x dev eth0",
                          "addr add fd00::11/64 nodad dev eth0",
                          "addr add fd00:2::11/64 noprefixroute nodad dev eth0"]
    assert lines[-1] == "link del dev br0"
    moved = U.plan_move(before)
    # every route the move added to the bridge is deleted from it and added back to the uplink
    for line in moved:
        if line.startswith("route add"):
            assert line.replace("route add", "route del") in lines
            assert line.replace("route add", "route add", 1).replace(" dev br0", " dev eth0") in lines
    assert U.plan_restore(before, before) == []
    assert U.plan_restore(before, U.simulate_move(before)) == lines


def test_restore_removes_only_what_the_move_put_on_the_bridge():
    before, after = snap(), copy.deepcopy(snap("after"))
    # things added to the bridge after the move (a pod port, a pod gateway, a pod route)
    after["links"]["br0"]["ports"].append("veth1")
    after["addresses"]["br0"].append({"family": "inet", "local": "10.244.1.1", "prefixlen": 24, "scope": "0",
                                      "label": "br0"})
    after["routes"].append({"family": 4, "dst": "10.244.9.0/24", "gateway": "10.1.0.13", "dev": "br0",
                            "table": "254", "protocol": "158", "scope": "0", "type": "1", "flags": []})
    lines = U.plan_restore(before, after)
    assert "link del dev br0" not in lines
    assert not [line for line in lines if "10.244." in line]
    reason = U.bridge_kept(before, after)
    assert "ports veth1" in reason and "addresses 10.244.1.1/24" in reason and "10.244.9.0/24" in reason
    assert U.bridge_kept(before, snap("after")) is None


def test_restore_gives_an_existing_bridge_its_settings_back():
    before = copy.deepcopy(snap())
    before["links"]["br0"] = {"kind": "bridge", "master": None, "mtu": 1500, "address": "aa:bb:cc:dd:ee:ff",
                              "up": False, "ports": []}
    moved = U.simulate_move(before)
    lines = U.plan_restore(before, moved)
    assert "link del dev br0" not in lines
    assert lines[-2:] == ["link set dev br0 address aa:bb:cc:dd:ee:ff mtu 1500", "link set dev br0 down"]


@pytest.mark.parametrize("address, assign_type, restored, made_again", [
    ("00:00:00:00:00:00", 1, False, False),      # a port-less bridge after pods came and went (kernel: random, zeroed)
    ("00:00:00:00:00:00", None, False, False),   # the same in a snapshot written before addr_assign_type was kept
    ("52:b3:45:2d:d4:64", 1, True, False),       # random, chosen by the kernel at creation
    ("02:e0:0b:c0:c4:7f", 2, True, False),       # taken from a port by the kernel
    ("aa:bb:cc:dd:ee:ff", 3, True, True),        # set by someone: put back
    ("aa:bb:cc:dd:ee:ff", None, True, True),     # an older snapshot: a valid address is put back
    ("01:00:5e:00:00:01", 3, False, False),      # multicast: the kernel refuses it
])
def test_restore_never_sets_a_bridge_mac_the_kernel_refuses(address, assign_type, restored, made_again):
    """An existing bridge gets back any address the kernel takes (the move had set the uplink's on it: a
    rollback is exact); a bridge made again gets one only when someone had set it."""
    before = copy.deepcopy(snap())
    before["links"]["br0"] = {"kind": "bridge", "master": None, "mtu": 1500, "address": address, "up": True,
                              "ports": [], "addr_assign_type": assign_type}
    moved = U.simulate_move(before)
    lines = U.plan_restore(before, moved)
    assert ("link set dev br0 address %s mtu 1500" % address in lines) is restored, lines
    if not restored:
        assert not any(" address " in line and line.startswith("link set dev br0") for line in lines), lines
    # the bridge gone meanwhile: made again, with the address only when it is restorable
    gone = copy.deepcopy(moved)
    gone["links"].pop("br0")
    gone["links"]["eth0"]["master"] = None
    first = U.plan_restore(before, gone)[0]
    assert first == ("link add name br0%s mtu 1500 type bridge" % (" address %s" % address if made_again else ""))


def test_a_line_the_kernel_refuses_is_an_error_before_any_change():
    with pytest.raises(U.UplinkError) as info:
        U.check_lines(["link set dev eth0 master br0", "link set dev br0 address 00:00:00:00:00:00"], "putting eth0 back")
    assert "putting eth0 back would run 'link set dev br0 address 00:00:00:00:00:00'" in str(info.value)
    assert U.valid_mac("02:00:00:00:00:11") and not U.valid_mac("02:00:00:00:00") and not U.valid_mac(None)


def test_restore_refuses_a_missing_uplink():
    after = copy.deepcopy(snap("after"))
    after["links"].pop("eth0")
    with pytest.raises(U.UplinkError) as info:
        U.plan_restore(snap(), after)
    assert "uplink eth0 does not exist on this host any more" in str(info.value)


# --------------------------------------------------------------------------- pieces


def test_route_args_cover_the_attributes():
    route = {"family": 4, "type": "1", "dst": "10.8.0.0/16", "tos": "0x10", "gateway": "10.1.0.1",
             "dev": "eth0", "table": "100", "protocol": "4", "scope": "0", "metric": 7, "prefsrc": "10.1.0.11",
             "flags": ["onlink"], "flow": {"to": "5"}, "metrics": [{"mtu": 1400, "initcwnd": 10}]}
    assert U.route_args(route) == ["10.8.0.0/16", "tos", "0x10", "via", "10.1.0.1", "table", "100", "proto", "4",
                                   "scope", "0", "metric", "7", "src", "10.1.0.11", "onlink", "realms", "5",
                                   "mtu", "1400", "initcwnd", "10"]
    v6 = {"family": 6, "type": "1", "dst": "default", "via": {"family": "inet6", "host": "fe80::1"},
          "table": "254", "protocol": "9", "scope": "0", "metric": 1024, "pref": "high"}
    assert U.route_args(v6) == ["::/0", "via", "inet6", "fe80::1", "table", "254", "proto", "9", "metric",
                                "1024", "pref", "high"]
    assert U.route_args({"family": 4, "type": "6", "dst": "10.5.0.0/16"})[:2] == ["blackhole", "10.5.0.0/16"]


def test_addr_args_keep_lifetimes_and_flags():
    addr = {"family": "inet6", "local": "fd00::5", "prefixlen": 64, "scope": "0", "valid_life_time": 3000,
            "preferred_life_time": 1000, "noprefixroute": True, "mngtmpaddr": True, "metric": 20}
    assert U.addr_args(addr, "br0", "eth0") == ["fd00::5/64", "metric", "20", "valid_lft", "3000",
                                                "preferred_lft", "1000", "noprefixroute", "mngtmpaddr",
                                                "nodad", "dev", "br0"]
    ptp = {"family": "inet", "local": "10.0.0.1", "address": "10.0.0.2", "prefixlen": 32, "scope": "0",
           "label": "eth0"}
    assert U.addr_args(ptp, "br0", "eth0") == ["10.0.0.1/32", "peer", "10.0.0.2", "dev", "br0"]
    assert U.addr_id(ptp) == "10.0.0.1/32 peer 10.0.0.2"


def test_check_targets():
    assert U.check_targets(snap()) == [{"address": "10.1.0.1", "family": 4}, {"address": "fd00::1", "family": 6}]
    assert U.check_targets(snap(), ["192.0.2.9", "fe80::1%br0", "192.0.2.9"]) == [
        {"address": "192.0.2.9", "family": 4}, {"address": "fe80::1", "family": 6}]
    with pytest.raises(U.UplinkError) as info:
        U.check_targets(snap(), ["gateway"])
    assert "check address 'gateway' is not an IP address" in str(info.value)


def test_render_names_every_fact():
    text = U.render(snap("after"))
    assert "eth0: veth mtu 1450 address %s up master br0\n" % MAC in text
    assert "br0: addr 10.1.0.11/24\n" in text
    assert "br0: route 0.0.0.0/0 via 10.1.0.1 table 254 proto 4 scope 0 metric 100\n" in text
    assert "br0: absent\n" in U.render(snap())


def test_snapshot_file_round_trip(tmp_path):
    path = tmp_path / "podnet" / "uplink-br0.json"
    assert U.load_snapshot(str(path)) is None
    U.save_snapshot(str(path), snap())
    assert U.load_snapshot(str(path)) == snap()
    path.write_text("{}")
    with pytest.raises(U.UplinkError):
        U.load_snapshot(str(path))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ScriptedRunner:
    """Answers commands from a list of (argv prefix, (rc, out, err)); records every call."""

    def __init__(self, clock, answers):
        self.clock, self.answers, self.calls = clock, answers, []

    def run(self, argv, data=None):
        self.calls.append(argv)
        self.clock.now += 0.5
        for prefix, answer in self.answers:
            if argv[:len(prefix)] == prefix:
                return answer(len(self.calls)) if callable(answer) else answer
        return 1, "", "unexpected %s" % argv


def test_probe_retries_until_the_deadline():
    clock = FakeClock()
    runner = ScriptedRunner(clock, [(["ping"], (1, "", "From 10.1.0.11 icmp_seq=1 Destination Host Unreachable"))])
    ok, detail = U.probe(runner, {"address": "10.1.0.1", "family": 4}, "br0", "ping", 3, clock=clock,
                         sleep=clock.sleep)
    assert not ok
    assert detail.startswith("10.1.0.1 did not answer ping: From 10.1.0.11 icmp_seq=1 Destination Host Unreachable")
    assert len(runner.calls) >= 2
    assert runner.calls[0] == ["ping", "-4", "-n", "-q", "-c", "1", "-W", "1", "10.1.0.1"]


def test_probe_with_backoff_spaces_its_attempts_further_apart():
    clock = FakeClock()
    runner = ScriptedRunner(clock, [(["ping"], (1, "", "timeout"))])
    ok, _detail = U.probe(runner, {"address": "10.1.0.1", "family": 4}, "br0", "ping", 40, clock=clock,
                          sleep=clock.sleep, backoff=True)
    assert not ok
    flat = ScriptedRunner(FakeClock(), [(["ping"], (1, "", "timeout"))])
    U.probe(flat, {"address": "10.1.0.1", "family": 4}, "br0", "ping", 40, clock=flat.clock, sleep=flat.clock.sleep)
    assert 5 <= len(runner.calls) <= 12 < len(flat.calls), (len(runner.calls), len(flat.calls))


def test_probe_neigh_needs_a_link_layer_answer():
    clock = FakeClock()
    states = iter([[{"dst": "fe80::1", "lladdr": "02:00:00:00:00:01", "state": ["STALE"]}],
                   [{"dst": "fe80::1", "state": ["INCOMPLETE"]}],
                   [{"dst": "fe80::1", "lladdr": "02:00:00:00:00:01", "state": ["REACHABLE"]}]])
    runner = ScriptedRunner(clock, [
        (["ip", "-json", "neigh", "show"], lambda n: (0, json.dumps(next(states)), "")),
        (["ip", "neigh", "del"], (0, "", "")),
        (["ping"], (1, "", "")),
    ])
    ok, detail = U.probe(runner, {"address": "fe80::1", "family": 6}, "br0", "neigh", 5, clock=clock,
                         sleep=clock.sleep)
    assert ok, detail
    assert "fe80::1 is at 02:00:00:00:00:01 on br0 (REACHABLE" in detail
    assert ["ip", "neigh", "del", "fe80::1", "dev", "br0"] in runner.calls
    assert ["ping", "-6", "-n", "-q", "-c", "1", "-W", "1", "-I", "br0", "fe80::1"] in runner.calls


def test_check_method_is_validated():
    with pytest.raises(U.UplinkError):
        U.check_all(None, [], "br0", method="arping")


def test_uplink_for_address():
    before, after = DATA["before"]["addresses"], DATA["after"]["addresses"]
    assert U.uplink_for_address(before, "10.1.0.11", "br0") == "eth0"
    assert U.uplink_for_address(before, "fd00::11/64", "br0") == "eth0"
    assert U.uplink_for_address(before, "198.51.100.1", "br0") == "eth1"
    # moved: the address is on the bridge; its one port, or the saved snapshot, names the uplink
    assert U.uplink_for_address(after, "10.1.0.11", "br0") == "eth0"
    assert U.uplink_for_address(after, "10.1.0.11", "br0", snap()) == "eth0"
    with pytest.raises(U.UplinkError) as info:
        U.uplink_for_address(before, "10.1.0.99", "br0")
    assert "no interface of this host holds 10.1.0.99" in str(info.value)
    two_ports = copy.deepcopy(after)
    two_ports.append({"ifname": "veth7", "master": "br0", "addr_info": []})
    with pytest.raises(U.UplinkError) as info:
        U.uplink_for_address(two_ports, "10.1.0.11", "br0")
    assert "on bridge br0 already, which has ports eth0, veth7" in str(info.value)
    assert U.uplink_for_address(two_ports, "10.1.0.11", "br0", snap()) == "eth0"
