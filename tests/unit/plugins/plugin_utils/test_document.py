# -*- coding: utf-8 -*-
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
