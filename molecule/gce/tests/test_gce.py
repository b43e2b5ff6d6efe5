"""The gce fabric: the routes of the lab router exist only because podnet.cluster.gce_routes asked the
(stand-in) Compute Engine API for them; nodes hold no peer routes; verify passes end to end."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from lib.netns_backend import lab_hosts

REPO = Path(__file__).resolve().parents[3]
STANDIN = Path(__file__).resolve().parents[1] / "inventory" / "gce-standin"


def _api_routes():
    endpoint = (STANDIN / "endpoint").read_text().strip().rstrip("/")
    request = urllib.request.Request(endpoint + "/projects/podnet-lab/global/routes",
                                     headers={"Authorization": "Bearer podnet-test-token"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read().decode()).get("items", [])


def test_one_owned_route_per_pod_subnet_in_the_api_and_on_the_router(inventory, node_vars, state):
    routes = _api_routes()
    want = {(cidrs[0], name) for name, cidrs in state["nodes"].items()}
    got = {(r["destRange"], r["nextHopInstance"].rsplit("/", 1)[-1]) for r in routes}
    assert got == want
    assert all(r["name"].startswith("podnet-") and r["priority"] == 1000 for r in routes)
    router = lab_hosts(str(inventory))["pngc-router"]
    on_router = {(r["dst"], r["gateway"]) for r in json.loads(router.check_output("ip -json route show proto 158"))}
    assert on_router == {(cidrs[0], str(ipaddress.ip_interface(node_vars[name]["podnet_node_ip"]).ip))
                         for name, cidrs in state["nodes"].items()}


def test_nodes_hold_no_peer_routes_and_keep_the_vpc_unmasqueraded(nodes):
    for name, host in nodes.items():
        assert host.check_output("ip route show proto 158").strip() == "", name
        masq = host.check_output("iptables-save -t nat")
        assert "-A PODNET-MASQ -d 172.29.42.0/24" in masq and "-j MASQUERADE" in masq, name


def test_verify_playbook_passes(inventory, nodes):
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH="%s:%s" % (bin_dir, os.environ.get("PATH", "")))
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "podnet.cluster.verify", "-i", str(inventory)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    count = len(nodes)
    for check in ("pod -> pod", "node -> pod", "pod -> node"):
        assert "%s (IPv4): %d/%d all ok" % (check, count * count, count * count) in out, out[-8000:]
