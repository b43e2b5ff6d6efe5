# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the module tests: scratch network namespaces and real Ansible runs inside them.

Every module runs in a real ``ansible-playbook`` process started with ``ip netns exec NS``, so
the kernel objects it reads and writes (links, routes, netfilter, /proc/sys/net) are those of
the scratch namespace, never the machine's own. Namespaces are named
``podnet-t-mod-<pid>-<n>``; they are deleted by the fixture finalizer, and leftovers of a killed
run (whose pid is gone) are deleted at the start of the next one.
"""

from __future__ import annotations

import itertools
import os
import subprocess

import pytest

from lib.labtools import remove_stale_namespaces
from modtest_lib import PREFIX, Netns

_counter = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _remove_leftover_namespaces():
    """Delete namespaces of earlier, killed runs (never those of a live process)."""
    remove_stale_namespaces(PREFIX)
    yield


@pytest.fixture
def netns_factory():
    created = []

    def make():
        name = "%s%d-%d" % (PREFIX, os.getpid(), next(_counter))
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "add", name], check=True)
        created.append(name)
        ns = Netns(name)
        ns.ip("link", "set", "lo", "up")
        return ns

    yield make
    for name in reversed(created):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def netns(netns_factory):
    return netns_factory()


@pytest.fixture
def node_pair(netns_factory):
    """Two namespaces joined by a veth: node (192.168.0.1/16, fd00:77::1/64, MTU 1450 on eth0)
    and peer (.0.2 / ::2). The node also has a route to 10.99.0.0/16 via a router at 192.168.0.254.
    """
    node, peer = netns_factory(), netns_factory()
    node.ip("link", "add", "eth0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", peer.name)
    node.ip("addr", "add", "192.168.0.1/16", "dev", "eth0")
    node.ip("-6", "addr", "add", "fd00:77::1/64", "dev", "eth0", "nodad")
    peer.ip("addr", "add", "192.168.0.2/16", "dev", "eth0")
    peer.ip("-6", "addr", "add", "fd00:77::2/64", "dev", "eth0", "nodad")
    node.ip("link", "set", "eth0", "up")
    peer.ip("link", "set", "eth0", "up")
    node.ip("route", "add", "10.99.0.0/16", "via", "192.168.0.254")
    return node, peer
