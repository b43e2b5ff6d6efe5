# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The overlay engine refuses another VXLAN device on its UDP port and underlay family, before any change.

The decision over decoded ``ip -d -json link show type vxlan`` answers, in the shapes iproute2 prints them (the
lab test test_vxlan.py makes such a device in a node's namespace and runs the playbook against it).
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay import plan_overlay
from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay_node import (
    check_foreign_vxlan,
    foreign_vxlan,
    vxlan_families,
)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError


def vxlan(name, vni, port, **data):
    info = dict(id=vni, port=port, learning=False, ttl=0, udp_csum=True, **data)
    return {"ifname": name, "linkinfo": {"info_kind": "vxlan", "info_data": info}}


OURS = [vxlan("podnet.vx4", 7, 4789, local="172.27.3.11"), vxlan("podnet.vx6", 7, 4789, local6="fd00:27::11")]
SPEC = {"vni": 7, "port": 4789, "peers": "",
        "devices": [{"name": "podnet.vx4", "family": 4, "local": "172.27.3.11", "mac": "02:00:00:00:00:01",
                     "addresses": ["10.91.0.0/32"]},
                    {"name": "podnet.vx6", "family": 6, "local": "fd00:27::11", "mac": "02:00:00:00:00:01",
                     "addresses": ["fd00:91::ffff:ffff:ffff:ffff/128"]}]}


class LinksRunner(object):
    """Answers ``ip -d -json link show type vxlan`` with ``links`` and other reads (``show``) with nothing; any
    other command (a write) fails the test: the check comes before every write."""

    check_mode = True

    def __init__(self, links):
        self.links = links
        self.calls = []

    def which(self, name):
        return "/sbin/" + name

    def run(self, argv, data=None):
        self.calls.append(argv)
        if argv[-4:] == ["link", "show", "type", "vxlan"] and "-d" in argv:
            return 0, json.dumps(self.links), ""
        if "show" in argv and "-batch" not in argv:
            return 0, "[]", ""
        raise AssertionError("unexpected command %r" % (argv,))


def test_families_of_a_vxlan_device():
    assert vxlan_families({"local": "172.27.3.11"}) == {4}
    assert vxlan_families({}) == {4}                               # no address: the kernel opens an IPv4 socket
    assert vxlan_families({"group6": "ff05::100"}) == {6}
    assert vxlan_families({"remote6": "fd00::5"}) == {6}
    assert vxlan_families({"local6": "fd00::1"}) == {6}
    assert vxlan_families({"external": True, "id": 0}) == {4, 6}   # flow-based: both sockets


def test_only_other_devices_on_our_port_and_family_are_named():
    links = OURS + [
        vxlan("flannel.1", 1, 8472, local="172.27.3.11"),               # another port
        vxlan("other6", 42, 4789, local6="fd00:27::11"),                 # our port, IPv6
        vxlan("meta", 0, 4789, external=True),                           # both families
        {"ifname": "br0", "linkinfo": {"info_kind": "bridge", "info_data": {"port": 4789}}},
    ]
    ours = {"podnet.vx4", "podnet.vx6"}
    assert foreign_vxlan(links, ours, 4789, {4}) == [("meta", 0, 4)]
    assert foreign_vxlan(links, ours, 4789, {4, 6}) == [("other6", 42, 6), ("meta", 0, 4), ("meta", 0, 6)]
    assert foreign_vxlan(links, ours, 8472, {4}) == [("flannel.1", 1, 4)]
    assert foreign_vxlan(links, ours, 4790, {4, 6}) == []
    assert foreign_vxlan(OURS, ours, 4789, {4, 6}) == []


def test_the_refusal_names_host_device_port_and_variable_before_any_other_command():
    runner = LinksRunner(OURS + [vxlan("fvx0", 42, 4789, local="172.27.3.11")])
    with pytest.raises(EngineError) as err:
        plan_overlay(runner, SPEC, "node-a", ours=("podnet.vx4", "podnet.vx6"))
    msg = err.value.msg
    assert msg.startswith("node node-a: the VXLAN device fvx0 (not podnet.cluster's) already uses UDP port 4789 "
                          "(podnet_vxlan_port)"), msg
    assert "fvx0 (VNI 42) uses UDP port 4789 over IPv4, as podnet.vx4 would" in msg
    assert "set podnet_vxlan_port to a port no VXLAN device of the nodes uses, or remove fvx0" in msg
    assert err.value.details["foreign"] == [{"device": "fvx0", "vni": 42, "family": 4, "port": 4789}]
    assert all("show" in argv for argv in runner.calls)        # read, nothing written


def test_our_devices_of_an_earlier_run_are_not_foreign_and_nothing_is_read_without_devices():
    check_foreign_vxlan(LinksRunner(OURS + [vxlan("podnet.vx9", 7, 4789)]), "n", SPEC,
                        {"podnet.vx4", "podnet.vx6", "podnet.vx9"})
    runner = LinksRunner([])
    check_foreign_vxlan(runner, "n", dict(SPEC, devices=[]), ())
    assert runner.calls == []
