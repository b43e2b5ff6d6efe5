# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The sysctl write order (accept_ra before forwarding, never alphabetical) and accept_ra=2 that stays.

The kernel purges RA-learned default routes on every link whose accept_ra is not 2 at the moment IPv6 forwarding
goes on; the lab test tests/integration/test_router_advertisements.py shows it with real advertisements.
"""

from __future__ import annotations

import json

from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts import forwarding as engine_node
from ansible_collections.podnet.cluster.plugins.module_utils.engine.sysctl import (
    apply_sysctl,
    plan_sysctl,
    render_file,
    write_order,
)


def test_accept_ra_first_forwarding_last_in_the_given_order_otherwise():
    keys = ["net.ipv6.conf.all.forwarding", "net.bridge.bridge-nf-call-iptables", "net.ipv4.ip_forward",
            "net/ipv6/conf/eth1/accept_ra", "net.ipv4.conf.all.rp_filter", "net/ipv6/conf/eth0/accept_ra"]
    assert write_order(keys) == ["net/ipv6/conf/eth1/accept_ra", "net/ipv6/conf/eth0/accept_ra",
                                 "net.bridge.bridge-nf-call-iptables", "net.ipv4.conf.all.rp_filter",
                                 "net.ipv6.conf.all.forwarding", "net.ipv4.ip_forward"]
    # putting back: forwarding off first, accept_ra last
    assert write_order(keys, teardown=True)[:2] == ["net.ipv6.conf.all.forwarding", "net.ipv4.ip_forward"]
    assert write_order(keys, teardown=True)[-2:] == ["net/ipv6/conf/eth1/accept_ra", "net/ipv6/conf/eth0/accept_ra"]
    text = render_file({"net.ipv6.conf.all.forwarding": "1", "net/ipv6/conf/eth0/accept_ra": "2"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["net/ipv6/conf/eth0/accept_ra = 2", "net.ipv6.conf.all.forwarding = 1"]


def test_live_values_are_written_in_that_order(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    for key, value in (("net/ipv4/ip_forward", "0"), ("net/ipv6/conf/all/forwarding", "0"),
                       ("net/ipv6/conf/eth0/accept_ra", "1")):
        (proc / key).parent.mkdir(parents=True, exist_ok=True)
        (proc / key).write_text(value + "\n")
    settings = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1", "net/ipv6/conf/eth0/accept_ra": "2"}
    change = plan_sysctl(settings, str(tmp_path / "etc/90.conf"), search_paths=(), sysctl_conf=None,
                         proc_root=str(proc))
    assert [key for key, _p, _v in change["to_write"]] == [
        "net/ipv6/conf/eth0/accept_ra", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    written = []
    monkeypatch.setattr("ansible_collections.podnet.cluster.plugins.module_utils.engine.sysctl.write_live",
                        lambda key, path, value: written.append(key) or value)
    apply_sysctl(change)
    assert written == ["net/ipv6/conf/eth0/accept_ra", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]


class Routes(object):
    """``ip -json`` answers: IPv6 routes and addresses as given."""

    check_mode = True

    def __init__(self, routes6=(), addrs6=()):
        self.routes6, self.addrs6 = list(routes6), list(addrs6)

    def which(self, name):
        return "/sbin/" + name

    def run(self, argv, data=None):
        if "route" in argv:
            return 0, json.dumps(self.routes6), ""
        if "addr" in argv:
            return 0, json.dumps(self.addrs6), ""
        raise AssertionError("unexpected command %r" % (argv,))


FORWARD6 = {"net.ipv6.conf.all.forwarding": "1"}


def live(values):
    return lambda key, proc_root=None, missing_ok=False: values.get(key.replace(".", "/"))


def test_links_that_learn_from_advertisements_get_accept_ra_2(monkeypatch):
    monkeypatch.setattr(engine_node, "read_live", live({"net/ipv6/conf/eth0/accept_ra": "1",
                                                        "net/ipv6/conf/eth1/accept_ra": "1",
                                                        "net/ipv6/conf/eth2/accept_ra": "0"}))
    runner = Routes(routes6=[{"dst": "default", "gateway": "fe80::1", "dev": "eth0", "protocol": "ra"},
                             {"dst": "fd00:1::/64", "dev": "eth2", "protocol": "ra"},       # accept_ra 0: the operator's
                             {"dst": "fd00:9::/64", "dev": "eth3", "protocol": "kernel"}],
                    addrs6=[{"ifname": "eth1", "addr_info": [{"local": "2001:db8::7", "scope": "global",
                                                              "dynamic": True}]}])
    assert engine_node.ra_settings(runner, FORWARD6) == {"net/ipv6/conf/eth0/accept_ra": "2",
                                                         "net/ipv6/conf/eth1/accept_ra": "2"}
    # no IPv6 forwarding wanted: nothing to protect
    assert engine_node.ra_settings(runner, {"net.ipv4.ip_forward": "1"}) == {}


def test_accept_ra_2_stays_while_the_router_is_away(monkeypatch):
    """No RA route now (an advertisement with router lifetime 0 removed it): the recorded accept_ra=2 stays, or a
    forwarding node would ignore the router's return. A link that is gone takes its key with it."""
    monkeypatch.setattr(engine_node, "read_live", live({"net/ipv6/conf/eth0/accept_ra": "2"}))
    recorded = dict(FORWARD6, **{"net/ipv6/conf/eth0/accept_ra": "2", "net/ipv6/conf/gone0/accept_ra": "2"})
    assert engine_node.ra_settings(Routes(), FORWARD6, None, recorded) == {"net/ipv6/conf/eth0/accept_ra": "2"}
    # kept even when the document no longer turns IPv6 forwarding on: until teardown
    assert engine_node.ra_settings(Routes(), {}, None, recorded) == {"net/ipv6/conf/eth0/accept_ra": "2"}


def test_accept_ra_keys_come_in_one_order_whatever_the_routes_and_the_record_say(monkeypatch):
    """Before an l2_bridge move the RA route is on eth0, after it on the bridge, and the record comes back with
    its keys sorted: every run must render the same file (a second converge changes nothing)."""
    monkeypatch.setattr(engine_node, "read_live", live({"net/ipv6/conf/eth0/accept_ra": "1",
                                                        "net/ipv6/conf/cbr0/accept_ra": "1"}))
    monkeypatch.setattr(engine_node, "snapshot_uplink", lambda path: None)
    uplink = {"bridge": "cbr0", "uplink": "eth0"}
    first = engine_node.ra_settings(Routes([{"dst": "default", "dev": "eth0", "protocol": "ra"}]), FORWARD6, uplink)
    recorded = json.loads(json.dumps(first, sort_keys=True))
    second = engine_node.ra_settings(Routes([{"dst": "default", "dev": "cbr0", "protocol": "ra"}]), FORWARD6, uplink,
                                     recorded)
    assert list(first) == list(second) == ["net/ipv6/conf/cbr0/accept_ra", "net/ipv6/conf/eth0/accept_ra"]
    assert render_file(dict(first, **FORWARD6)) == render_file(dict(second, **FORWARD6))
