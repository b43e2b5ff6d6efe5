# SPDX-License-Identifier: Apache-2.0
"""Unit tests of the netns command builder (lab/plugins/module_utils/netns.py): the default per-node root."""

from __future__ import annotations

import doctest

import pytest

from ansible_collections.podnet.lab.plugins.module_utils import netns


def test_doctests():
    assert doctest.testmod(netns).failed == 0


def test_default_root_is_per_node_and_outside_the_overlaid_directories():
    assert netns.default_root("n1") == "/var/tmp/podnet-netns/n1"
    assert netns.default_root("n2") != netns.default_root("n1")
    assert netns.default_root("/proc/42/ns/net") == "/var/tmp/podnet-netns/proc-42-ns-net"
    assert netns.default_root("n1", base="/srv/layers/") == "/srv/layers/n1"
    with pytest.raises(ValueError, match="inside /etc"):
        netns.default_root("n1", base="/etc/podnet")
    with pytest.raises(ValueError):
        netns.default_root("..")


def test_every_command_of_a_default_root_overlays_etc():
    argv = netns.build_argv("n1", "true", root=netns.default_root("n1"))
    assert "upperdir=/var/tmp/podnet-netns/n1/upper/etc" in argv[-3]
