"""The router fabric: the lab router routes every node's pod subnets via the node; nodes hold no peer routes."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

from lib.netns_backend import lab_hosts

REPO = Path(__file__).resolve().parents[3]


def _router(inventory):
    import yaml

    lab = yaml.safe_load(inventory.read_text())["all"]["children"]["podnet_lab"]
    (name,) = lab["children"]["podnet_routers"]["hosts"]
    return lab_hosts(str(inventory))[name]


def test_the_router_routes_every_pod_subnet_via_its_node(inventory, nodes, node_vars, state):
    router = _router(inventory)
    want = set()
    for name, cidrs in state["nodes"].items():
        ips = node_vars[name]["podnet_node_ip"]
        ips = ips if isinstance(ips, list) else [ips]
        for cidr in cidrs:
            family = ipaddress.ip_network(cidr).version
            via = next(str(ipaddress.ip_interface(i).ip) for i in ips if ipaddress.ip_interface(i).version == family)
            want.add((cidr, via))
    got = set()
    for flag in ("-4", "-6"):
        got |= {(r["dst"], r["gateway"]) for r in json.loads(router.check_output("ip %s -json route show proto 158"
                                                                                  % flag))}
    assert got == want


def test_nodes_hold_no_peer_routes_and_forward(nodes, state):
    for name, host in nodes.items():
        assert host.check_output("ip route show proto 158").strip() == "", name
        assert host.check_output("ip -6 route show proto 158").strip() == "", name
        assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1", name
        record = json.loads(host.file("/etc/podnet/node.json").content_string)
        assert record["document"]["fabric"] == "router" and record["document"]["routes"]["routes"] == []


def test_verify_playbook_passes(inventory, nodes, state):
    state_file = inventory.parent / "podnet_state.yml"
    before = state_file.read_bytes()
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH="%s:%s" % (bin_dir, os.environ.get("PATH", "")))
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "podnet.cluster.verify", "-i", str(inventory)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    families = sorted({ipaddress.ip_network(c).version for c in next(iter(state["nodes"].values()))})
    count = len(nodes)
    for family in families:
        for check in ("pod -> pod", "node -> pod", "pod -> node"):
            assert "%s (IPv%d): %d/%d all ok" % (check, family, count * count, count * count) in out, out[-8000:]
    assert "PASSED" in out and "FAILED" not in out.split("PASSED")[-1][:200]
    assert state_file.read_bytes() == before
