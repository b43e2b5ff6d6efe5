# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The lab role's input check for router advertisements and node IPs (filter podnet.lab.lab_input_errors)."""

from __future__ import annotations

from ansible_collections.podnet.lab.plugins.filter.lab import lab_input_errors

BASE = {"state": "present", "name": "lab", "nodes": 2, "subnet": "172.30.9.0/24", "external_cidr": "203.0.113.0/24",
        "root": "/var/tmp/podnet-lab/lab", "inventory_dir": "inventories/lab", "check_tools": False}


def test_router_advertisements_need_an_ipv6_underlay_and_usable_times():
    errors = lab_input_errors(dict(BASE, router_advertisements=True, ra_interval=0, ra_lifetime="forever",
                                   node_ip="maybe"))
    text = "\n".join(errors)
    assert "podnet_lab_router_advertisements" in text and "podnet_lab_subnet_ipv6" in text
    assert "podnet_lab_ra_interval: 0" in text
    assert "podnet_lab_ra_lifetime: 'forever'" in text
    assert "podnet_lab_node_ip: 'maybe'" in text
    ok = dict(BASE, subnet_ipv6="fd00:30:9::/64", router_advertisements=True, ra_interval="30", ra_lifetime=0,
              node_ip=False)
    assert lab_input_errors(ok) == []


def test_a_compile_cache_must_be_an_absolute_path_without_a_colon():
    for bad, why in (("cache", "'cache' is not an absolute path"), (7, "7 is not an absolute path"),
                     ("/var/tmp/a:b", "'/var/tmp/a:b' contains ':', which PYTHONPATH cannot carry")):
        errors = lab_input_errors(dict(BASE, code_cache=bad))
        assert errors == ["podnet_lab_code_cache: " + why], errors
    for good in ("", None, "/var/tmp/podnet-code-cache"):
        assert lab_input_errors(dict(BASE, code_cache=good)) == []
