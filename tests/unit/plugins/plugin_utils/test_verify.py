"""Unit tests of the verify matrix (plugins/plugin_utils/verify.py): targets, judgement, report, preflight."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from ansible_collections.podnet.cluster.plugins.plugin_utils.verify import (
    VerifyError,
    cells,
    judge,
    pod_addresses,
    preflight,
    probes_for,
    short_error,
)

NAMES = ["node1", "node2", "node10"]


def make_plan(dual=True, names=NAMES):
    nodes = {}
    for i, name in enumerate(names, start=1):
        pod = ["10.244.%d.0/24" % i] + (["fd00:10:244:%x::/64" % i] if dual else [])
        nodes[name] = {
            "node_ips": ["172.30.77.%d" % (10 + i)] + (["fd30:77::%x" % (0x10 + i)] if dual else []),
            "node_cidrs": ["172.30.77.0/24"] + (["fd30:77::/64"] if dual else []),
            "pod_cidrs": pod,
            "gateways": [c.replace("0/24", "1").replace("::/64", "::1") for c in pod],
            "bridge_addresses": [],
        }
    return {
        "cluster_cidrs": ["10.244.0.0/16"] + (["fd00:10:244::/56"] if dual else []),
        "node_cidrs": ["172.30.77.0/24"] + (["fd30:77::/64"] if dual else []),
        "nodes": nodes,
    }


def make_pods(plan):
    pods, servers = {}, {}
    for i, (name, node) in enumerate(plan["nodes"].items(), start=1):
        ips = [c.replace("0/24", "2").replace("::/64", "::2") for c in node["pod_cidrs"]]
        pods[name] = {"name": "pod-" + name, "mode": "cni", "pid": 100 + i, "netns": "/proc/%d/ns/net" % (100 + i),
                      "ips": ips, "addresses": [ip + ("/64" if ":" in ip else "/24") for ip in ips]}
        servers[name] = {"name": "srv-" + name, "mode": "host", "pid": 200 + i, "netns": None}
    return pods, servers


EXTERNAL = {"ipv4": "198.51.100.10", "ipv6": "2001:db8:51::10", "port": 47300, "server": "ext"}


class Network:
    """A model of a correct pod network: answers every probe the way the real one should."""

    def __init__(self, plan, pods, servers, external=EXTERNAL):
        self.plan, self.pods, self.servers, self.external = plan, pods, servers, external
        self.owner = {}
        for name, pod in pods.items():
            for ip in pod["ips"]:
                self.owner[ip] = pod["name"]
        for name, node in plan["nodes"].items():
            for ip in node["node_ips"]:
                self.owner[ip] = servers[name]["name"]
        for key in ("ipv4", "ipv6"):
            if external.get(key):
                self.owner[external[key]] = external.get("server")

    def node_address(self, node, family):
        return next(ip for ip in self.plan["nodes"][node]["node_ips"] if ipaddress.ip_address(ip).version == family)

    def answer(self, node, probe):
        family = ipaddress.ip_address(probe["target"]).version
        if probe["source_netns"]:
            pod = next(p for p in self.pods.values() if p["netns"] == probe["source_netns"])
            local = next(ip for ip in pod["ips"] if ipaddress.ip_address(ip).version == family)
        else:
            local = self.node_address(node, family)
        seen = local
        if probe["target"] in (self.external.get("ipv4"), self.external.get("ipv6")):
            seen = self.node_address(node, family)  # masqueraded
        out = dict(probe, ok=True, connected=True, error=None, local=local, elapsed_ms=1)
        if probe.get("connect_only"):
            out.update(seen=None, server=None)
        else:
            out.update(seen=seen, server=self.owner.get(probe["target"]))
        return out

    def results(self, nodes=None, external=None):
        out = {}
        for node in nodes or self.plan["nodes"]:
            probes = probes_for(self.plan, node, list(self.plan["nodes"]), self.pods, self.servers,
                                external if external is not None else self.external)
            out[node] = {"probes": [self.answer(node, p) for p in probes],
                         "addresses": list(self.plan["nodes"][node]["node_ips"])}
        return out


def setup(dual=True, external=EXTERNAL):
    plan = make_plan(dual)
    pods, servers = make_pods(plan)
    net = Network(plan, pods, servers, external)
    return plan, pods, servers, net


def probe_of(results, node, probe_id):
    return next(p for p in results[node]["probes"] if p["id"] == probe_id)


# --- pod addresses ----------------------------------------------------------

def test_pod_addresses_are_the_last_usable_address_of_each_subnet():
    node = {"pod_cidrs": ["10.244.1.0/24", "fd00:10:244:1::/64"]}
    assert pod_addresses(node) == ["10.244.1.254/24", "fd00:10:244:1:ffff:ffff:ffff:ffff/64"]
    assert pod_addresses({"pod_cidrs": ["10.1.0.64/26"]}) == ["10.1.0.126/26"]
    assert pod_addresses({"pod_cidrs": ["10.1.0.4/30"]}) == ["10.1.0.6/30"]


def test_pod_addresses_reject_tiny_or_bad_subnets():
    with pytest.raises(VerifyError):
        pod_addresses({"pod_cidrs": ["10.1.0.0/31"]})
    with pytest.raises(VerifyError):
        pod_addresses({"pod_cidrs": ["nonsense"]})


# --- targets --------------------------------------------------------------

def test_every_ordered_pair_every_family_and_egress():
    plan, pods, servers, _net = setup()
    all_cells = cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL)
    # 3 checks x 2 families x 3 x 3 pairs + egress 2 families x 3 sources
    assert len(all_cells) == 3 * 2 * 9 + 2 * 3
    assert len({c["id"] for c in all_cells}) == len(all_cells)
    assert not [c for c in all_cells if c["skip"]]
    pairs = {(c["source"], c["target"]) for c in all_cells if c["check"] == "pod_pod" and c["family"] == 6}
    assert pairs == {(a, b) for a in NAMES for b in NAMES}  # including a node with itself


def test_probes_of_one_node():
    plan, pods, servers, _net = setup()
    probes = probes_for(plan, "node2", list(plan["nodes"]), pods, servers, EXTERNAL)
    assert len(probes) == 20
    by_id = {p["id"]: p for p in probes}
    pp = by_id["pod_pod/4/node2/node10"]
    assert pp == {"id": "pod_pod/4/node2/node10", "target": "10.244.3.2", "port": 47300,
                  "source_netns": "/proc/102/ns/net", "connect_only": False}
    assert by_id["node_pod/6/node2/node1"]["source_netns"] is None
    assert by_id["node_pod/6/node2/node1"]["target"] == "fd00:10:244:1::2"
    assert by_id["pod_node/4/node2/node1"]["target"] == "172.30.77.11"
    assert by_id["pod_node/6/node2/node2"]["target"] == "fd30:77::12"
    assert by_id["egress/6/node2/external"]["target"] == "2001:db8:51::10"
    assert {p["source_netns"] for p in probes} == {None, "/proc/102/ns/net"}


def test_natural_order_of_nodes():
    plan, pods, servers, _net = setup()
    targets = [c["target"] for c in cells(plan, list(plan["nodes"]), pods, servers)
               if c["check"] == "pod_pod" and c["family"] == 4 and c["source"] == "node1"]
    assert targets == ["node1", "node2", "node10"]


def test_ipv4_only_plan_probes_ipv4_only_even_if_pods_have_ipv6():
    plan = make_plan(dual=False)
    pods, servers = make_pods(make_plan(dual=True))
    all_cells = cells(plan, list(plan["nodes"]), pods, servers, {"ipv4": "198.51.100.10"})
    assert {c["family"] for c in all_cells} == {4}
    assert len(all_cells) == 3 * 9 + 3


def test_no_external_no_egress_and_external_without_server_is_connect_only():
    plan, pods, servers, _net = setup()
    assert not [c for c in cells(plan, list(plan["nodes"]), pods, servers, None) if c["check"] == "egress"]
    ext = {"ipv4": "198.51.100.10", "ipv6": "", "port": 443, "server": ""}
    egress = [c for c in cells(plan, list(plan["nodes"]), pods, servers, ext) if c["check"] == "egress"]
    assert len(egress) == 3
    assert all(c["connect_only"] and c["port"] == 443 and c["family"] == 4 for c in egress)


def test_missing_pod_makes_cells_unprobeable_not_missing():
    plan, pods, servers, _net = setup()
    del pods["node2"]
    all_cells = cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL)
    assert len(all_cells) == 60
    skipped = [c for c in all_cells if c["skip"]]
    # from node2's pod: pod_pod 6 + pod_node 6 + egress 2; to node2's pod: pod_pod 4 (others) + node_pod 6
    assert len(skipped) == 6 + 6 + 2 + 4 + 6
    assert not [p for p in probes_for(plan, "node1", list(plan["nodes"]), pods, servers, EXTERNAL)
                if p["target"].startswith("10.244.2.")]


def test_pod_ip_outside_its_node_subnet_is_reported():
    plan, pods, servers, _net = setup(dual=False)
    pods["node1"]["ips"] = ["10.99.0.2"]
    (cell,) = [c for c in cells(plan, list(plan["nodes"]), pods, servers)
               if c["check"] == "pod_pod" and c["source"] == "node2" and c["target"] == "node1"]
    assert "no IPv4 address in 10.244.1.0/24" in cell["skip"] and "10.99.0.2" in cell["skip"]


def test_nodes_outside_the_run_are_left_out():
    plan, pods, servers, _net = setup()
    all_cells = cells(plan, ["node1", "node2"], pods, servers)
    assert {c["source"] for c in all_cells} == {"node1", "node2"}
    assert {c["target"] for c in all_cells} == {"node1", "node2"}


# --- judging --------------------------------------------------------------

def run_judge(plan, pods, servers, results, external=EXTERNAL, nodes=None):
    return judge(plan, nodes or list(plan["nodes"]), pods, servers, results, external)


def test_a_correct_network_passes():
    plan, pods, servers, net = setup()
    summary = run_judge(plan, pods, servers, net.results())
    assert summary["passed"], summary["report"]
    assert summary["total"] == summary["ok_count"] == 60
    assert summary["failures"] == [] and summary["failed_count"] == 0
    assert [m["title"] for m in summary["checks"]][:2] == ["pod -> pod (IPv4)", "pod -> pod (IPv6)"]
    assert "PASSED: 60 of 60 probes ok" in summary["report"]
    assert summary["endpoints"]["node1"]["pod_ips"] == ["10.244.1.2", "fd00:10:244:1::2"]


def test_nat_between_pods_fails_with_the_seen_address():
    plan, pods, servers, net = setup()
    results = net.results()
    probe = probe_of(results, "node1", "pod_pod/4/node1/node2")
    probe["seen"] = "172.30.77.11"  # SNATed to node1's address
    summary = run_judge(plan, pods, servers, results)
    assert not summary["passed"]
    (failure,) = summary["failures"]
    assert failure["check"] == "pod_pod" and failure["source"] == "node1" and failure["target"] == "node2"
    assert failure["seen"] == "172.30.77.11" and "NAT" in failure["reason"]
    matrix = summary["checks"][0]
    assert matrix["rows"]["node1"]["node2"] == "FAIL (172.30.77.11)"
    assert matrix["rows"]["node1"]["node1"] == "ok"
    assert summary["failures_by_source"] == {"node1": [
        "IPv4 pod on node1 -> pod on node2 (10.244.2.2): NAT: the server saw 172.30.77.11, the client is 10.244.1.2"]}


def test_the_pod_must_see_itself_as_its_own_ip():
    plan, pods, servers, net = setup()
    results = net.results()
    probe = probe_of(results, "node2", "pod_node/6/node2/node1")
    probe["seen"] = probe["local"] = "fd00:10:244:2::99"  # not the pod's IP, consistently
    summary = run_judge(plan, pods, servers, results)
    (failure,) = summary["failures"]
    assert "expected the pod's own IP fd00:10:244:2::2" in failure["reason"]


def test_node_to_pod_must_be_seen_as_a_node_address():
    plan, pods, servers, net = setup()
    results = net.results()
    probe = probe_of(results, "node1", "node_pod/4/node1/node10")
    probe["seen"] = probe["local"] = "10.244.1.1"  # the bridge address: not in the result's addresses
    summary = run_judge(plan, pods, servers, results)
    (failure,) = summary["failures"]
    assert "not an address of node node1" in failure["reason"]
    results["node1"]["addresses"].append("10.244.1.1")  # now it is one of node1's
    assert run_judge(plan, pods, servers, results)["passed"]


def test_egress_must_be_masqueraded_to_the_node():
    plan, pods, servers, net = setup()
    results = net.results()
    probe = probe_of(results, "node10", "egress/4/node10/external")
    probe["seen"] = probe["local"]  # not masqueraded (it answered: the external host had a route back)
    summary = run_judge(plan, pods, servers, results)
    (failure,) = summary["failures"]
    assert failure["check"] == "egress" and "not masqueraded to an address of node node10" in failure["reason"]
    assert summary["checks"][-2]["rows"]["node10"]["external"] == "FAIL (10.244.3.2)"


def test_egress_without_external_server_is_reachability_only():
    ext = {"ipv4": "198.51.100.10", "port": 443, "server": ""}
    plan, pods, servers, net = setup(external=ext)
    results = net.results()
    assert run_judge(plan, pods, servers, results, ext)["passed"]
    probe_of(results, "node1", "egress/4/node1/external").update(ok=False, connected=False,
                                                                    error="timeout (connect, 3.0 s)")
    summary = run_judge(plan, pods, servers, results, ext)
    assert summary["failed_count"] == 1
    assert summary["failures"][0]["reason"] == "timeout (connect, 3.0 s)"


def test_errors_wrong_server_and_missing_results():
    plan, pods, servers, net = setup()
    results = net.results()
    probe_of(results, "node1", "pod_pod/6/node1/node2").update(ok=False, error="no route to host (connect)",
                                                               seen=None, local=None)
    probe_of(results, "node2", "pod_node/4/node2/node1")["server"] = "someone-else"
    del results["node10"]
    summary = run_judge(plan, pods, servers, results)
    reasons = {(f["check"], f["family"], f["source"], f["target"]): f["reason"] for f in summary["failures"]}
    assert reasons[("pod_pod", 6, "node1", "node2")] == "no route to host (connect)"
    assert "answered by 'someone-else'" in reasons[("pod_node", 4, "node2", "node1")]
    assert reasons[("egress", 4, "node10", "external")].startswith("not probed: node node10 returned no result")
    assert summary["failed_count"] == 2 + 20
    rows = {m["title"]: m["rows"] for m in summary["checks"]}
    assert rows["pod -> pod (IPv6)"]["node1"]["node2"] == "FAIL (unreachable)"
    assert rows["pod -> pod (IPv6)"]["node10"]["node1"] == "FAIL (no result)"


def test_failed_node_without_pod_is_reported_in_every_cell_it_is_in():
    plan, pods, servers, net = setup()
    results = net.results(nodes=["node1", "node2"])
    del pods["node10"], servers["node10"]
    # what node1 and node2 would have probed without node10's pod
    for node in ("node1", "node2"):
        probes = probes_for(plan, node, NAMES, pods, servers, EXTERNAL)
        results[node]["probes"] = [net.answer(node, p) for p in probes]
    summary = run_judge(plan, pods, servers, results)
    failed = {(f["check"], f["source"], f["target"]) for f in summary["failures"]}
    assert ("pod_pod", "node1", "node10") in failed and ("pod_node", "node2", "node10") in failed
    assert ("pod_pod", "node10", "node1") in failed and ("egress", "node10", "external") in failed
    assert "(no probe pod)" in summary["report"]
    assert not [f for f in summary["failures"] if "node10" not in (f["source"], f["target"])]


def test_report_shape():
    plan, pods, servers, net = setup(dual=False)
    results = net.results()
    probe_of(results, "node1", "pod_pod/4/node1/node2")["seen"] = "172.30.77.11"
    lines = run_judge(plan, pods, servers, results)["report_lines"]
    assert lines[0].split() == ["node", "probe", "pod", "node", "IPs"]
    start = lines.index("pod -> pod (IPv4): 8/9 1 FAILED")
    assert lines[start + 1].split() == ["from", "\\", "to", "node1", "node2", "node10"]
    assert lines[start + 2].split() == ["node1", "ok", "FAIL", "(172.30.77.11)", "ok"]
    assert "pod -> external (IPv4 198.51.100.10 port 47300): 3/3 all ok" in lines
    assert lines[-2] == "FAILED: 1 of 30 probes"
    assert all(line == line.rstrip() for line in lines)


def test_inputs_are_not_modified():
    plan, pods, servers, net = setup()
    results = net.results()
    before = copy.deepcopy((plan, pods, servers, results))
    run_judge(plan, pods, servers, results)
    assert (plan, pods, servers, results) == before


def test_short_error():
    assert short_error("timeout (connect, 3.0 s)") == "timeout"
    assert short_error("connection refused (connect)") == "refused"
    assert short_error("network unreachable (connect)") == "unreachable"
    assert short_error("not probed: no probe pod on node1") == "not probed"


# --- preflight ------------------------------------------------------------

def test_preflight_accepts_a_good_configuration():
    plan = make_plan()
    assert preflight(plan, "node1", ["docker", "cni"], EXTERNAL, "ext", ["node1", "ext"], 47300, 3) == []


@pytest.mark.parametrize("kwargs, expected", [
    ({"plan": None}, "podnet_plan is not set"),
    ({"node": "ghost"}, "ghost is not in podnet_plan.nodes"),
    ({"runtimes": ["rkt"]}, "unknown runtime(s) rkt"),
    ({"port": 70000}, "podnet_verify_port"),
    ({"timeout": "soon"}, "podnet_verify_timeout"),
    ({"external": {"ipv4": "10.244.9.9"}}, "inside 10.244.0.0/16"),
    ({"external": {"ipv4": "172.30.77.200"}}, "inside 172.30.77.0/24"),
    ({"external": {"ipv4": "2001:db8::1"}}, "not an IPv4 address"),
    ({"external": {"ipv6": "198.51.100.1"}}, "not an IPv6 address"),
    ({"external": {"ipv4": "198.51.100.0/24"}}, "not an IPv4 address"),
    ({"external_host": "nowhere"}, "'nowhere' is not an inventory host"),
    ({"external": {}, "external_host": "ext"}, "says which of its addresses"),
])
def test_preflight_errors(kwargs, expected):
    args = {"plan": make_plan(), "node": "node1", "runtimes": ["cni"], "external": EXTERNAL, "external_host": "ext",
            "inventory_hosts": ["node1", "node2", "node10", "ext"], "port": 47300, "timeout": 3}
    args.update(kwargs)
    errors = preflight(args.pop("plan"), args.pop("node"), **args)
    assert any(expected in e for e in errors), errors


def test_preflight_ipv6_external_needs_an_ipv6_plan():
    errors = preflight(make_plan(dual=False), "node1", ["cni"], {"ipv6": "2001:db8:51::10"})
    assert any("no IPv6 cluster network" in e for e in errors)


def test_cells_of_one_source_are_those_of_the_whole_matrix():
    plan, pods, servers, _net = setup()
    everything = cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL)
    for node in NAMES:
        assert cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL, source=node) == [
            c for c in everything if c["source"] == node]


def test_a_hundred_nodes_are_judged_quickly():
    import time

    names = ["n%d" % i for i in range(100)]
    plan = make_plan(dual=True, names=names)
    pods, servers = make_pods(plan)
    net = Network(plan, pods, servers)
    start = time.monotonic()
    results = net.results()
    summary = judge(plan, names, pods, servers, results, EXTERNAL)
    assert summary["passed"] and summary["total"] == 3 * 2 * 100 * 100 + 2 * 100
    assert time.monotonic() - start < 20
