# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The one interface-name rule: the kernel's limits, and within them what podnet.cluster writes unquoted."""

from __future__ import annotations

import pytest

from ansible_collections.podnet.cluster.plugins.module_utils.ifname import ifname_problem, valid_ifname
from ansible_collections.podnet.cluster.plugins.module_utils.iptables import RuleError, render_rule
from ansible_collections.podnet.cluster.plugins.plugin_utils.document import DEFAULTS, settings_errors, uplink_errors


@pytest.mark.parametrize("name", ["cbr0", "a", "x" * 15, "eth0.100", "br_pods-2", ".hidden", "a.", "0", "ENP0S3"])
def test_accepted(name):
    assert ifname_problem(name) is None and valid_ifname(name)


@pytest.mark.parametrize("name, words", [
    ("", "is empty"),
    (None, "not an interface name (a string)"),
    (15, "not an interface name (a string)"),
    ("x" * 16, "16 bytes long; the kernel takes interface names of at most 15"),
    ("äöüäöüäö", "16 bytes long"),                 # 8 characters, 16 bytes: the limit is in bytes
    (".", "the kernel refuses '.' and '..'"),
    ("..", "the kernel refuses '.' and '..'"),
    ("br/0", "the kernel refuses '/'"),
    ("br:0", "the kernel refuses ':'"),
    ("br 0", "the kernel refuses ' '"),
    ("br\t0", "the kernel refuses '\\t'"),
    ("br\n0", "the kernel refuses '\\n'"),
    ("br$;'0", "has '$', \"'\", ';': podnet.cluster takes"),
    ("br#0", "has '#'"),
    ("brü", "has 'ü'"),
    ("br0@if2", "has '@'"),
    ("-br0", "starts with '-'"),
])
def test_refused(name, words):
    problem = ifname_problem(name)
    assert problem and words in problem, problem
    assert not valid_ifname(name)


def _settings(**changes):
    settings = dict(DEFAULTS)
    settings.update(changes)
    return settings


def test_document_names_the_host_and_the_variable():
    errors = settings_errors("node7", _settings(bridge="br0;reboot"))
    assert any(e.startswith("host node7: podnet_bridge='br0;reboot' has ';'") for e in errors), errors
    errors = uplink_errors("node7", _settings(uplink="x" * 16))
    assert any(e.startswith("host node7: podnet_uplink='%s' is 16 bytes long" % ("x" * 16)) for e in errors), errors
    assert not uplink_errors("node7", _settings(uplink=""))


def test_iptables_takes_the_wildcard_and_refuses_what_the_rule_refuses():
    assert "-i eth+" in render_rule({"in_interface": "eth+", "jump": "ACCEPT"}, "FORWARD", 4)
    assert "-o +" in render_rule({"out_interface": "+", "jump": "ACCEPT"}, "FORWARD", 4)
    with pytest.raises(RuleError, match=r"in_interface 'br\$0' has '\$'"):
        render_rule({"in_interface": "br$0", "jump": "ACCEPT"}, "FORWARD", 4)
    with pytest.raises(RuleError, match="out_interface '-x' starts with '-'"):
        render_rule({"out_interface": "!-x", "jump": "ACCEPT"}, "FORWARD", 4)
