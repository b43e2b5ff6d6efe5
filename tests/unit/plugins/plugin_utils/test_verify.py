# SPDX-License-Identifier: Apache-2.0
"""Unit tests of the verify matrix (plugins/plugin_utils/verify.py): targets, judgement, report, preflight."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from ansible_collections.podnet.cluster.plugins.plugin_utils.verify import (
    VerifyError,
    cells,
    node_view,
    preflight,
    probe_addresses,
    short_error,
)
from ansible_collections.podnet.cluster.plugins.filter.verify_matrix import verify_matrix
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify_judge import judge
from ansible_collections.podnet.cluster.plugins.plugin_utils.verify_sample import (
    probes_for,
)

NAMES = ["node1", "node2", "node10"]


def make_plan(dual=True, names=None):
    nodes = {}
    names = NAMES if names is None else names
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
    """(pods, servers, peers): the first probe pod of each node gets .2/::2, the second .3/::3."""
    pods, servers, peers = {}, {}, {}
    for i, (name, node) in enumerate(plan["nodes"].items(), start=1):
        for table, host, pid, prefix in ((pods, "2", 100 + i, "pod-"), (peers, "3", 300 + i, "peer-")):
            ips = [c.replace("0/24", host).replace("::/64", "::" + host) for c in node["pod_cidrs"]]
            table[name] = {"name": prefix + name, "mode": "cni", "pid": pid, "netns": "/proc/%d/ns/net" % pid,
                           "ips": ips, "addresses": [ip + ("/64" if ":" in ip else "/24") for ip in ips]}
        servers[name] = {"name": "srv-" + name, "mode": "host", "pid": 200 + i, "netns": None}
    return pods, servers, peers


EXTERNAL = {"ipv4": "198.51.100.10", "ipv6": "2001:db8:51::10", "port": 47300, "server": "ext"}


class Network:
    """A model of a correct pod network: answers every probe the way the real one should."""

    def __init__(self, plan, pods, servers, external=None, peers=None):
        external = EXTERNAL if external is None else external
        self.plan, self.pods, self.servers, self.external = plan, pods, servers, external
        self.peers = peers or {}
        self.owner = {}
        for pod in list(pods.values()) + list(self.peers.values()):
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
            pod = next(p for p in list(self.pods.values()) + list(self.peers.values())
                       if p["netns"] == probe["source_netns"])
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
                                external if external is not None else self.external, peers=self.peers)
            out[node] = {"probes": [self.answer(node, p) for p in probes],
                         "addresses": list(self.plan["nodes"][node]["node_ips"])}
        return out


def setup(dual=True, external=None):
    """plan, pods, servers, net; the second pods are net.peers."""
    external = EXTERNAL if external is None else external
    plan = make_plan(dual)
    pods, servers, peers = make_pods(plan)
    net = Network(plan, pods, servers, external, peers)
    return plan, pods, servers, net


def probe_of(results, node, probe_id):
    return next(p for p in results[node]["probes"] if p["id"] == probe_id)


# --- probe addresses (pods wired by hand) --------------------------------

def allocator_ranges(plan, node, runtimes):
    """Every (first, last) address an allocator may hand out, read back from the node role's own config."""
    from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import runtime_config

    config = runtime_config(plan, node, runtimes)
    out = []
    if config["docker"]:
        net = ipaddress.ip_network(config["docker"]["fixed-cidr"])
        out.append((net[0], net[-1]))
    for plugin in (config["cni"] or {}).get("plugins", []):
        for range_set in plugin.get("ipam", {}).get("ranges", []):
            for rng in range_set:
                net = ipaddress.ip_network(rng["subnet"])
                out.append((ipaddress.ip_address(rng.get("rangeStart", net[1])),
                            ipaddress.ip_address(rng.get("rangeEnd", net[-1]))))
    return out


def test_probe_addresses_without_allocators_are_the_highest_usable_ones():
    plan = make_plan()
    first, second = probe_addresses(plan, "node1", [])
    assert first == ["10.244.1.254/24", "fd00:10:244:1:ffff:ffff:ffff:ffff/64"]
    assert second == ["10.244.1.253/24", "fd00:10:244:1:ffff:ffff:ffff:fffe/64"]


@pytest.mark.parametrize("prefix, expected", [(26, "10.244.1.62/26"), (29, "10.244.1.6/29"), (30, None)])
def test_probe_addresses_of_small_subnets(prefix, expected):
    plan = make_plan(dual=False)
    plan["nodes"]["node1"]["pod_cidrs"] = ["10.244.1.0/%d" % prefix]
    if expected is None:  # a /30 holds the gateway and one more address: not two probe pods
        with pytest.raises(VerifyError, match=r"10.244.1.0/30 .*there is only 1: of its 2 usable addresses"):
            probe_addresses(plan, "node1", [])
    else:
        assert probe_addresses(plan, "node1", [])[0] == [expected]


@pytest.mark.parametrize("runtimes", [["docker"], ["cni"], ["docker", "cni"]])
def test_probe_addresses_never_inside_an_allocator_range(runtimes):
    """The last address of a block is inside Docker's fixed-cidr (and host-local's range): never use it."""
    for dual in (False, True):
        plan = make_plan(dual=dual)
        try:
            pods = probe_addresses(plan, "node2", runtimes)
        except VerifyError as exc:
            # none left: the refusal names the host, the block and what covers it
            text = str(exc)
            assert text.startswith("host node2: ") and "10.244.2.0/24" in text
            assert ("Docker's fixed-cidr" in text) == ("docker" in runtimes)
            assert ("host-local's range" in text) == ("cni" in runtimes)
            assert "put cni in podnet_runtimes" in text
            continue
        for pod in pods:
            for text in pod:
                addr = ipaddress.ip_interface(text).ip
                assert not [r for r in allocator_ranges(plan, "node2", runtimes)
                            if r[0].version == addr.version and r[0] <= addr <= r[1]], (runtimes, text)
    with pytest.raises(VerifyError, match=r"Docker's fixed-cidr 10.244.2.0/24 and the gateway 10.244.2.1 "
                                          r"cover them all"):
        probe_addresses(make_plan(), "node2", ["docker"])


def test_docker_only_leaves_ipv6_to_the_probe_pods_but_not_ipv4():
    plan = make_plan(dual=True)
    with pytest.raises(VerifyError) as info:
        probe_addresses(plan, "node1", ["docker"])
    assert "IPv4 addresses of 10.244.1.0/24" in str(info.value) and "IPv6" not in str(info.value)


def test_probe_addresses_skip_the_gateways_of_the_plan():
    plan = make_plan(dual=False)
    plan["nodes"]["node1"]["gateways"] = ["10.244.1.254"]
    assert probe_addresses(plan, "node1", []) == [["10.244.1.253/24"], ["10.244.1.252/24"]]


# --- targets --------------------------------------------------------------

def test_every_ordered_pair_every_family_and_egress():
    plan, pods, servers, net = setup()
    all_cells = cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=net.peers)
    # 3 checks x 2 families x 3 x 3 pairs + egress 2 families x 3 sources
    assert len(all_cells) == 3 * 2 * 9 + 2 * 3
    assert len({c["id"] for c in all_cells}) == len(all_cells)
    assert not [c for c in all_cells if c["skip"]]
    pairs = {(c["source"], c["target"]) for c in all_cells if c["check"] == "pod_pod" and c["family"] == 6}
    assert pairs == {(a, b) for a in NAMES for b in NAMES}  # including a node with itself


def test_same_node_cell_is_one_pod_to_another_pod_on_that_node():
    """Pod <-> pod on one node is proven with two pods: never a pod talking to itself."""
    plan, pods, servers, net = setup()
    by_id = {c["id"]: c for c in cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=net.peers)}
    for family, first, second in ((4, "10.244.2.2", "10.244.2.3"), (6, "fd00:10:244:2::2", "fd00:10:244:2::3")):
        cell = by_id["pod_pod/%d/node2/node2" % family]
        assert cell["source_netns"] == pods["node2"]["netns"]            # from the first pod
        assert cell["address"] == second != first                        # to the second pod's IP
        assert cell["expect"] == {"seen": first, "seen_from_node": False, "server": "peer-node2"}
        assert not cell["skip"]
        # across nodes the first pods talk to each other
        assert by_id["pod_pod/%d/node1/node2" % family]["address"] == first
    # an answer from the source pod itself (one pod talking to itself) fails the cell
    results = net.results()
    probe = probe_of(results, "node2", "pod_pod/4/node2/node2")
    probe.update(server="pod-node2")
    summary = run_judge(plan, pods, servers, results, peers=net.peers)
    (failure,) = summary["failures"]
    assert failure["source"] == failure["target"] == "node2" and "expected 'peer-node2'" in failure["reason"]
    assert "pod on node2 -> second pod on node2 (10.244.2.3)" in summary["report"]


def test_same_node_cell_without_a_second_pod_is_reported():
    plan, pods, servers, net = setup()
    del net.peers["node1"]
    all_cells = cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=net.peers)
    skipped = {c["id"]: c["skip"] for c in all_cells if c["skip"]}
    assert set(skipped) == {"pod_pod/4/node1/node1", "pod_pod/6/node1/node1"}
    assert skipped["pod_pod/4/node1/node1"] == "not probed: no second probe pod on node1"
    summary = run_judge(plan, pods, servers, net.results(), peers=net.peers)
    assert summary["failed_count"] == 2 and "(no second pod)" in summary["report"]


def test_probes_of_one_node():
    plan, pods, servers, net = setup()
    probes = probes_for(plan, "node2", list(plan["nodes"]), pods, servers, EXTERNAL, peers=net.peers)
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
    plan, pods, servers, net = setup()
    targets = [c["target"] for c in cells(plan, list(plan["nodes"]), pods, servers, peers=net.peers)
               if c["check"] == "pod_pod" and c["family"] == 4 and c["source"] == "node1"]
    assert targets == ["node1", "node2", "node10"]


def test_ipv4_only_plan_probes_ipv4_only_even_if_pods_have_ipv6():
    plan = make_plan(dual=False)
    pods, servers, peers = make_pods(make_plan(dual=True))
    all_cells = cells(plan, list(plan["nodes"]), pods, servers, {"ipv4": "198.51.100.10"}, peers=peers)
    assert {c["family"] for c in all_cells} == {4}
    assert len(all_cells) == 3 * 9 + 3


def test_no_external_no_egress_and_external_without_server_is_connect_only():
    plan, pods, servers, net = setup()
    assert not [c for c in cells(plan, list(plan["nodes"]), pods, servers, None, peers=net.peers) if c["check"] == "egress"]
    ext = {"ipv4": "198.51.100.10", "ipv6": "", "port": 443, "server": ""}
    egress = [c for c in cells(plan, list(plan["nodes"]), pods, servers, ext, peers=net.peers) if c["check"] == "egress"]
    assert len(egress) == 3
    assert all(c["connect_only"] and c["port"] == 443 and c["family"] == 4 for c in egress)


def test_missing_pod_makes_cells_unprobeable_not_missing():
    plan, pods, servers, net = setup()
    del pods["node2"]
    all_cells = cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=net.peers)
    assert len(all_cells) == 60
    skipped = [c for c in all_cells if c["skip"]]
    # from node2's pod: pod_pod 6 + pod_node 6 + egress 2; to node2's pod: pod_pod 4 (others) + node_pod 6
    assert len(skipped) == 6 + 6 + 2 + 4 + 6
    assert not [p for p in probes_for(plan, "node1", list(plan["nodes"]), pods, servers, EXTERNAL, peers=net.peers)
                if p["target"].startswith("10.244.2.")]


def test_pod_ip_outside_its_node_subnet_is_reported():
    plan, pods, servers, net = setup(dual=False)
    pods["node1"]["ips"] = ["10.99.0.2"]
    (cell,) = [c for c in cells(plan, list(plan["nodes"]), pods, servers, peers=net.peers)
               if c["check"] == "pod_pod" and c["source"] == "node2" and c["target"] == "node1"]
    assert "no IPv4 address in 10.244.1.0/24" in cell["skip"] and "10.99.0.2" in cell["skip"]


def test_nodes_outside_the_run_are_left_out():
    plan, pods, servers, net = setup()
    all_cells = cells(plan, ["node1", "node2"], pods, servers, peers=net.peers)
    assert {c["source"] for c in all_cells} == {"node1", "node2"}
    assert {c["target"] for c in all_cells} == {"node1", "node2"}


# --- judging --------------------------------------------------------------

def run_judge(plan, pods, servers, results, external=None, nodes=None, peers=None):
    external = EXTERNAL if external is None else external
    if peers is None:  # the second pods of the model network (make_pods)
        peers = make_pods(plan)[2]
    return judge(plan, nodes or list(plan["nodes"]), pods, servers, results, external, peers=peers)


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
        "IPv4 pod on node1 -> pod on node2 (10.244.2.2): [network] NAT: the server saw 172.30.77.11, the client is "
        "10.244.1.2"]}


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
    assert summary["failures"][0]["reason"].startswith("timeout (connect, 3.0 s): no answer to the connection to "
                                                       "198.51.100.10:443")
    assert summary["failures"][0]["category"] == "network"


def test_errors_wrong_server_and_missing_results():
    plan, pods, servers, net = setup()
    results = net.results()
    probe_of(results, "node1", "pod_pod/6/node1/node2").update(ok=False, error="no route to host (connect)",
                                                               seen=None, local=None)
    probe_of(results, "node2", "pod_node/4/node2/node1")["server"] = "someone-else"
    del results["node10"]
    summary = run_judge(plan, pods, servers, results)
    reasons = {(f["check"], f["family"], f["source"], f["target"]): f["reason"] for f in summary["failures"]}
    assert reasons[("pod_pod", 6, "node1", "node2")].startswith("no route to host (connect): no route to ")
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
        probes = probes_for(plan, node, NAMES, pods, servers, EXTERNAL, peers=net.peers)
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
    assert lines[0].startswith("Probes: full matrix")
    assert lines[2].split() == ["node", "probe", "pod", "second", "pod", "node", "IPs"]
    assert lines[3].split() == ["node1", "10.244.1.2", "(cni)", "10.244.1.3", "172.30.77.11"]
    start = lines.index("pod -> pod (IPv4): 8 of 9 ok, 1 FAILED")
    assert lines[start + 1].split() == ["from", "\\", "to", "node1", "node2", "node10"]
    assert lines[start + 2].split() == ["node1", "ok", "FAIL", "(172.30.77.11)", "ok"]
    assert "pod -> external (IPv4 198.51.100.10 port 47300): 3 of 3 ok" in lines
    assert lines[-2] == "FAILED: 1 of 30 probes (1 network)"
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
    errors = preflight(args["plan"], args["node"], **{k: v for k, v in args.items() if k not in ("plan", "node")})
    assert any(expected in e for e in errors), errors


def test_preflight_refuses_pods_wired_by_hand_inside_docker_fixed_cidr():
    errors = preflight(make_plan(), "node2", ["docker"], EXTERNAL, "ext", ["node1", "node2", "node10", "ext"])
    (error,) = errors
    assert error.startswith("host node2: the probe pods need 2 IPv4 addresses of 10.244.2.0/24")
    assert "Docker's fixed-cidr 10.244.2.0/24" in error and "put cni in podnet_runtimes" in error
    assert preflight(make_plan(), "node2", [], EXTERNAL, "ext", ["node1", "node2", "node10", "ext"]) == []
    assert preflight(make_plan(), "node2", ["docker", "cni"], EXTERNAL, "ext",
                     ["node1", "node2", "node10", "ext"]) == []


def test_preflight_ipv6_external_needs_an_ipv6_plan():
    errors = preflight(make_plan(dual=False), "node1", ["cni"], {"ipv6": "2001:db8:51::10"})
    assert any("no IPv6 cluster network" in e for e in errors)


def test_cells_of_one_source_are_those_of_the_whole_matrix():
    plan, pods, servers, net = setup()
    everything = cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL, peers=net.peers)
    for node in NAMES:
        assert cells(plan, list(plan["nodes"]), pods, servers, EXTERNAL, source=node, peers=net.peers) == [
            c for c in everything if c["source"] == node]


def test_a_hundred_nodes_are_judged():
    """The whole matrix of a hundred dual-stack nodes: every probe judged once. (How fast: make bench.)"""
    names = ["n%d" % i for i in range(100)]
    plan = make_plan(dual=True, names=names)
    pods, servers, peers = make_pods(plan)
    net = Network(plan, pods, servers, peers=peers)
    results = net.results()
    summary = judge(plan, names, pods, servers, results, EXTERNAL, peers=peers)
    assert summary["passed"] and summary["total"] == 3 * 2 * 100 * 100 + 2 * 100


def test_fabric_vxlan_expects_pod_to_other_node_masqueraded():
    """In fabric vxlan a pod's traffic to another node's IP is masqueraded on purpose (docs/node.md): the cell
    passes when that node saw an address of the pod's node, and fails when it saw the pod (the exception is
    the fabric's, not a loophole: pod -> pod and pod -> own node still must not be translated)."""
    plan, pods, servers, net = setup()
    results = net.results()
    for node, res in results.items():
        for probe in res["probes"]:
            if probe["id"].startswith("pod_node/") and not probe["id"].endswith("/" + node):
                family = ipaddress.ip_address(probe["target"]).version
                probe["seen"] = net.node_address(node, family)
    summary = judge(plan, NAMES, pods, servers, results, EXTERNAL, peers=net.peers, fabric="vxlan")
    assert summary["passed"], summary["report"]
    assert not judge(plan, NAMES, pods, servers, results, EXTERNAL, peers=net.peers)["passed"]
    untranslated = judge(plan, NAMES, pods, servers, net.results(), EXTERNAL, peers=net.peers, fabric="vxlan")
    assert {f["check"] for f in untranslated["failures"]} == {"pod_node"}
    assert untranslated["failed_count"] == 2 * 3 * 2     # 2 families x 3 sources x 2 other nodes
    own = probe_of(results, "node1", "pod_node/4/node1/node1")
    own["seen"] = "172.30.77.11"
    assert not judge(plan, NAMES, pods, servers, results, EXTERNAL, peers=net.peers, fabric="vxlan")["passed"]


def test_a_node_view_holds_its_own_node_and_the_plans_other_fields():
    plan = dict(make_plan(), diff={"before": "x" * 100, "after": "y"}, added=["node3"])
    view = node_view(plan, "node2")
    assert view["nodes"] == {"node2": plan["nodes"]["node2"]}
    assert view["cluster_cidrs"] == plan["cluster_cidrs"] and view["added"] == ["node3"]
    assert "diff" not in view  # the state file's text: O(N), and no check reads it
    assert node_view(plan, "ghost")["nodes"] == {}
    assert node_view(None, "node1") is None and node_view({"nodes": []}, "node1") == {"nodes": []}


@pytest.mark.parametrize("runtimes", [["cni"], [], ["docker"], ["docker", "cni"]])
def test_each_hosts_checks_answer_from_its_own_node_as_from_the_whole_plan(runtimes):
    """The filter's per-host steps read a node view (O(1) per host); the answers are those of the whole plan."""
    plan = make_plan()
    hosts = ["node1", "node2", "node10", "ext"]
    for node in list(plan["nodes"]) + ["ghost"]:
        assert verify_matrix(plan, "preflight", node=node, runtimes=runtimes, external=EXTERNAL, external_host="ext",
                             inventory_hosts=hosts) == preflight(plan, node, runtimes, EXTERNAL, "ext", hosts)
        if node == "ghost" or runtimes:  # pods wired by hand: no runtime of the collection on the node
            continue
        for index in (0, 1):
            assert verify_matrix(plan, "pod_addresses", node=node, runtimes=runtimes, index=index) == \
                probe_addresses(plan, node, runtimes)[index]


class Untouchable(dict):
    """A node entry that must not be read (converting it, as plain() of the whole plan does, fails)."""

    def items(self):
        raise AssertionError("another node's entry was read")


def test_a_hosts_checks_never_read_the_other_nodes():
    plan = make_plan()
    plan["nodes"]["node2"] = Untouchable(plan["nodes"]["node2"])
    assert verify_matrix(plan, "preflight", node="node1", runtimes=[], external=EXTERNAL, external_host="ext",
                         inventory_hosts=["node1", "ext"]) == []
    second = verify_matrix(plan, "pod_addresses", node="node1", runtimes=[], index=1)
    assert second == ["10.244.1.253/24", "fd00:10:244:1:ffff:ffff:ffff:fffe/64"]
