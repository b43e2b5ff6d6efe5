# SPDX-License-Identifier: Apache-2.0
"""The verify playbook on the converged lab: every probe of the three rules and egress passes."""

from __future__ import annotations

import ipaddress
import re

from lib.molecule_scenario import assert_three_rules, run_verify


def test_verify_playbook_passes_and_cleans_up(inventory, nodes, state):
    state_file = inventory.parent / ".podnet_state.yml"
    state_before = (state_file.read_bytes(), state_file.stat().st_mtime_ns)
    out = run_verify(inventory)
    count = len(nodes)
    assert_three_rules(out, count)
    assert "pod -> external (IPv4 203.0.113.10 port 47300): %d of %d ok" % (count, count) in out, out[-8000:]
    total = 3 * count * count + count
    assert "PASSED: %d of %d probes ok" % (total, total) in out, out[-8000:]
    # the same-node cells went to a second pod: every node's row of the table has two pod IPs of its block
    for name in nodes:
        block = ipaddress.ip_network(state["nodes"][name][0])
        row = next(line for line in out.splitlines() if line.split()[:1] == [name])
        pods = {a for a in re.findall(r"\d+\.\d+\.\d+\.\d+", row) if ipaddress.ip_address(a) in block}
        assert len(pods) == 2, row
    # the proof changed nothing but its own probes: the state file is as it was
    assert (state_file.read_bytes(), state_file.stat().st_mtime_ns) == state_before
    # Probes are gone: no veth of a probe pod left on the bridge, no record left.
    for name, host in nodes.items():
        assert host.run("ls /run/podnet-verify 2>/dev/null").stdout.strip() == "", name
        assert "master cbr0" not in host.check_output("ip -o link show"), name
