# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The node document's settings: every bad value refused with the host and the variable, never defaulted."""

from __future__ import annotations

import pytest

from ansible_collections.podnet.cluster.plugins.plugin_utils.document import build_document
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError

PLAN = {"cluster_cidrs": ["10.91.0.0/17"], "node_cidrs": ["172.27.3.0/24"],
        "nodes": {"n1": {"node_ips": ["172.27.3.11"], "pod_cidrs": ["10.91.0.0/25"], "gateways": ["10.91.0.1"],
                         "bridge_addresses": ["10.91.0.1/25"]}}}


@pytest.mark.parametrize("settings,needle", [
    ({"bridge": None}, "podnet_bridge is null"),
    ({"bridge": "br0;reboot"}, "podnet_bridge="),
    ({"bridge": "brü0"}, "podnet_bridge="),
    ({"bridge_mtu": "jumbo"}, "podnet_bridge_mtu='jumbo'"),
    ({"route_protocol": "bgp"}, "podnet_route_protocol='bgp'"),
    ({"nonmasquerade_cidrs": "10.0.0.0/8"}, "podnet_nonmasquerade_cidrs='10.0.0.0/8' is not a list"),
    ({"nonmasquerade_cidrs": 12}, "podnet_nonmasquerade_cidrs=12 is not a list"),
    ({"nonmasquerade_cidrs": ["10.0.0.1/8"]}, "podnet_nonmasquerade_cidrs[0]: 10.0.0.1/8 has host bits"),
    ({"nonmasquerade_cidrs": [5]}, "podnet_nonmasquerade_cidrs[0]: 5 is not a network"),
    ({"nonmasquerade_cidrs": ["192.168.0.0/33"]}, "podnet_nonmasquerade_cidrs[0]"),
    ({"cni_network_name": "../../etc"}, "podnet_cni_network_name="),
    ({"cni_version": 1}, "podnet_cni_version=1"),
])
def test_bad_setting_names_host_and_variable(settings, needle):
    with pytest.raises(PlanError) as err:
        build_document(PLAN, "n1", settings)
    assert any(e.startswith("host n1: ") and needle in e for e in err.value.errors), err.value.errors


def test_numbers_given_as_text_are_numbers():
    doc = build_document(PLAN, "n1", {"bridge_mtu": "1400", "route_protocol": "158"})
    assert doc["bridge"]["mtu"] == 1400 and doc["routes"]["protocol"] == 158


# --- fabric l2_bridge -------------------------------------------------------

DUAL = {"cluster_cidrs": ["10.91.0.0/17", "fd00:91::/56"], "node_cidrs": ["172.27.3.0/24"],
        "nodes": {"n1": {"node_ips": ["172.27.3.11", "fd00:27:3::11"], "pod_cidrs": ["10.91.1.0/25", "fd00:91:0:7::/64"],
                         "gateways": ["10.91.1.1", "fd00:91:0:7::1"],
                         "bridge_addresses": ["10.91.1.1/25", "fd00:91:0:7::1/64"]},
                  "n2": {"node_ips": ["172.27.3.12", "fd00:27:3::12"], "pod_cidrs": ["10.91.127.128/25",
                                                                                     "fd00:91:0:ff::/64"],
                         "gateways": ["10.91.127.129", "fd00:91:0:ff::1"],
                         "bridge_addresses": ["10.91.127.129/25", "fd00:91:0:ff::1/64"]}}}


def test_l2_bridge_gateways_carry_the_cluster_prefix_and_there_are_no_routes():
    doc = build_document(DUAL, "n1", {"fabric": "l2_bridge", "runtimes": ["cni"]})
    assert doc["bridge"]["addresses"] == ["10.91.1.1/17", "fd00:91:0:7::1/56"]
    assert doc["routes"]["routes"] == []
    assert doc["uplink"] == {"bridge": "cbr0", "snapshot_path": "/etc/podnet/uplink-cbr0.json", "check_address": [],
                             "check_method": "ping", "check_timeout": 5, "rollback_timeout": 30,
                             "uplink_address": "172.27.3.11"}


def test_l2_bridge_hands_out_only_the_nodes_block_from_the_shared_subnet():
    doc = build_document(DUAL, "n2", {"fabric": "l2_bridge", "runtimes": ["cni"]})
    v4, v6 = doc["cni"]["conflist"]["plugins"][0]["ipam"]["ranges"]
    # the last block's last address is the cluster network's broadcast address: left out
    assert v4 == [{"subnet": "10.91.0.0/17", "rangeStart": "10.91.127.130", "rangeEnd": "10.91.127.254",
                   "gateway": "10.91.127.129"}]
    assert v6 == [{"subnet": "fd00:91::/56", "rangeStart": "fd00:91:0:ff::2",
                   "rangeEnd": "fd00:91:0:ff:ffff:ffff:ffff:ffff", "gateway": "fd00:91:0:ff::1"}]


def test_l2_bridge_with_both_runtimes_splits_the_block():
    doc = build_document(DUAL, "n1", {"fabric": "l2_bridge", "uplink": "eno1"})
    (v4,), _v6 = doc["cni"]["conflist"]["plugins"][0]["ipam"]["ranges"]
    assert v4 == {"subnet": "10.91.0.0/17", "rangeStart": "10.91.1.2", "rangeEnd": "10.91.1.63", "gateway": "10.91.1.1"}
    assert doc["docker"]["set"]["fixed-cidr"] == "10.91.1.64/26"
    assert doc["uplink"]["uplink"] == "eno1" and "uplink_address" not in doc["uplink"]


def test_other_fabrics_have_no_uplink_and_keep_the_block_prefix():
    doc = build_document(DUAL, "n1", {"fabric": "l2_routes", "runtimes": ["cni"]})
    assert "uplink" not in doc
    assert doc["bridge"]["addresses"] == ["10.91.1.1/25", "fd00:91:0:7::1/64"]
    assert doc["cni"]["conflist"]["plugins"][0]["ipam"]["ranges"][0] == [{"subnet": "10.91.1.0/25",
                                                                          "gateway": "10.91.1.1"}]


@pytest.mark.parametrize("settings,needle", [
    ({"uplink": "eth0 up"}, "podnet_uplink='eth0 up'"),
    ({"uplink": "cbr0"}, "podnet_uplink='cbr0' is the bridge itself"),
    ({"l2_bridge_check_address": "192.0.2.1"}, "podnet_l2_bridge_check_address='192.0.2.1' is not a list"),
    ({"l2_bridge_check_address": ["192.0.2.1/24"]}, "podnet_l2_bridge_check_address[0]: '192.0.2.1/24'"),
    ({"l2_bridge_check_method": "arp"}, "podnet_l2_bridge_check_method='arp'"),
    ({"l2_bridge_check_timeout": 0}, "podnet_l2_bridge_check_timeout=0"),
    ({"l2_bridge_rollback_timeout": "5"}, "podnet_l2_bridge_rollback_timeout=5 must be greater than "
                                          "podnet_l2_bridge_check_timeout=5"),
])
def test_bad_l2_bridge_setting_names_host_and_variable(settings, needle):
    with pytest.raises(PlanError) as err:
        build_document(DUAL, "n1", dict(settings, fabric="l2_bridge"))
    assert any(e.startswith("host n1: ") and needle in e for e in err.value.errors), err.value.errors
