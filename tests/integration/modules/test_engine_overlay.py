# SPDX-License-Identifier: Apache-2.0
"""The overlay engine (fabric vxlan's part of podnet.cluster.node_state) run inside a scratch namespace: a link
named like one of its devices that is not a VXLAN device is somebody else's, and is never deleted."""

from __future__ import annotations

from modtest_lib import failed, ok

SPEC = {"vni": 7, "port": 4789, "peers": "",
        "devices": [{"name": "podnet.vx4", "family": 4, "local": "192.168.0.1", "mac": "02:00:00:00:00:01",
                     "addresses": ["10.91.0.0/32"]}]}


def overlay_step(args, check=False):
    return {"engine": "overlay", "args": dict(args, node="node1", protocol=158), "check": check}


def kind(ns, name):
    """The link's kind (vxlan, veth, "plain"), or None when there is no such link."""
    for link in ns.ip_json("-d", "link", "show"):
        if link["ifname"] == name:
            return (link.get("linkinfo") or {}).get("info_kind") or "plain"
    return None


def test_a_link_of_the_devices_name_that_is_not_vxlan_is_refused_and_kept(node_pair):
    node, _peer = node_pair
    # the engine's own device: made, then removed by the absent state (the deletion this test guards is real)
    made, removed = node.engine([overlay_step(dict(spec=SPEC, state="present")),
                                 overlay_step(dict(spec=None, state="absent", old=SPEC))])
    ok(made), ok(removed)
    assert "device podnet.vx4" in made["added"]
    assert kind(node, "podnet.vx4") is None, removed

    # somebody else's link of that name: refused by the present state and by the removal of the record's device
    node.ip("link", "add", "podnet.vx4", "type", "veth", "peer", "name", "vx4peer")
    present, check, absent = node.engine([overlay_step(dict(spec=SPEC, state="present")),
                                          overlay_step(dict(spec=SPEC, state="present"), check=True),
                                          overlay_step(dict(spec=None, state="absent", old=SPEC))])
    for result in (present, check, absent):
        failed(result)
        assert "podnet.vx4 is a veth device, not a VXLAN device" in result["msg"], result
        assert "Nothing was changed" in result["msg"] and result["kind"] == "veth"
    assert kind(node, "podnet.vx4") == "veth"
