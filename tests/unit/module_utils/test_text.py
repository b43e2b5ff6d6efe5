# SPDX-License-Identifier: Apache-2.0
"""module_utils/text: long lists cut short in messages, why a string is no network, and the engine's route
check saying it for a peer; fileutil.write_if_changed writing only what differs."""

from __future__ import annotations

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils.engine.routes import desired_routes
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import write_if_changed
from ansible_collections.podnet.cluster.plugins.module_utils.text import capped, limit, names, network_problem


def test_capped_keeps_short_lists_and_counts_what_it_leaves_out():
    assert capped(["a", "b"], 2) == ["a", "b"]
    assert capped(iter("abcde"), 2) == ["a", "b", "... and 3 more"]
    assert capped(list("abc"), 1, "... and %d more hosts") == ["a", "... and 2 more hosts"]
    assert limit(list("abcd"), 3) == "a; b; c; ... and 1 more"
    assert limit([], 3) == ""


def test_names_joins_the_first_and_says_how_many_more():
    assert names([], 3) == ""
    assert names(["a", "b", "c"], 3) == "a, b, c"
    assert names(iter(["a", "b", "c", "d", "e"]), 2) == "a, b and 3 more"
    assert names(["x", "y"], 1, sep="; ") == "x and 1 more"


@pytest.mark.parametrize("text, expected", [
    ("10.244.1.0/24", None),
    ("fd00:88::/64", None),
    ("10.244.1.7/24", "dst 10.244.1.7/24 has host bits set (the network is 10.244.1.0/24)"),
    ("fd00:88::1/64", "dst fd00:88::1/64 has host bits set (the network is fd00:88::/64)"),
    ("bogus", "dst 'bogus' is not a network: "),
    ("10.0.0.0/33", "dst '10.0.0.0/33' is not a network: "),
])
def test_network_problem(text, expected):
    problem = network_problem(text, "dst")
    if expected is None:
        assert problem is None
    else:
        assert problem.startswith(expected)


def test_a_peer_route_with_host_bits_names_the_peer_and_the_network():
    with pytest.raises(EngineError) as info:
        desired_routes(["10.244.2.9/24 via 192.168.10.12 peer node2"], "node1")
    assert "peer node2: dst 10.244.2.9/24 has host bits set (the network is 10.244.2.0/24)" in str(info.value)


def test_write_if_changed_writes_only_what_differs(tmp_path):
    path = tmp_path / "sub" / "report.html"
    assert write_if_changed(str(path), "one\n") is True
    assert path.read_text() == "one\n"
    mtime = path.stat().st_mtime_ns
    assert write_if_changed(str(path), "one\n") is False
    assert path.stat().st_mtime_ns == mtime
    assert write_if_changed(str(path), "two\n") is True
    assert path.read_text() == "two\n"
