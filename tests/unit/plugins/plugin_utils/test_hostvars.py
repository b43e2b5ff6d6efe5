# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Another host's variables as a run-once task knows them (plugin_utils/hostvars.py)."""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.plugin_utils.hostvars import other_host_values

DEFAULTS = {"fabric": "l2_routes", "bridge": "cbr0"}


def test_a_host_variable_of_this_host_is_not_the_other_hosts():
    # ash (the task's host) sets fabric router in its inventory, birch sets nothing: birch has the default
    seen = {"fabric": "router", "bridge": "cbr0"}
    assert other_host_values(seen, {"fabric": "router"}, {}, DEFAULTS) == {"fabric": "l2_routes", "bridge": "cbr0"}


def test_the_other_hosts_own_value_wins():
    seen = {"fabric": "router", "bridge": "cbr0"}
    assert other_host_values(seen, {"fabric": "router"}, {"bridge": "br9"}, DEFAULTS) == {
        "fabric": "l2_routes", "bridge": "br9"}


def test_a_play_variable_is_every_hosts():
    # the task sees l2_bridge although ash's inventory says router: a play variable overrides it, for birch too
    seen = {"fabric": "l2_bridge", "bridge": "cbr0"}
    assert other_host_values(seen, {"fabric": "router"}, {}, DEFAULTS)["fabric"] == "l2_bridge"
    # and one this host's inventory does not set at all
    assert other_host_values({"fabric": "gce", "bridge": "cbr0"}, {}, {}, DEFAULTS)["fabric"] == "gce"


def test_without_a_default_the_variable_is_unset():
    seen = {"node_ip": "172.31.9.11/24", "fabric": "l2_routes"}
    values = other_host_values(seen, {"node_ip": "172.31.9.11/24"}, {}, {"fabric": "l2_routes"})
    assert "node_ip" not in values and values["fabric"] == "l2_routes"
