# SPDX-License-Identifier: Apache-2.0
"""Pure logic of podnet.cluster.gce_routes (plugins/module_utils/gce.py, gce_names.py): names, ownership, plan, messages."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.podnet.cluster.plugins.module_utils import gce, gce_apply, gce_client, gce_names
from ansible_collections.podnet.cluster.plugins.module_utils.gce import (
    instance_problems,
    is_owned,
    parse_route,
    parse_wanted,
    plan_routes,
)
from ansible_collections.podnet.cluster.plugins.module_utils.gce_names import (
    GceInputError,
    encode_cidr,
    instance_path,
    network_path,
    prefix_problem,
    route_names,
)
from ansible_collections.podnet.cluster.plugins.module_utils.gce_client import ErrorInfo

P = "proj"
NET = "projects/proj/global/networks/k8s"
NET_URL = "https://www.googleapis.com/compute/v1/" + NET
MARK = gce_names.default_description("podnet")


def net(text):
    return ipaddress.ip_network(text)


def api_route(name, dest, instance="node1", zone="z1", network=NET_URL, description=MARK, priority=1000, **extra):
    raw = dict(name=name, destRange=dest, network=network, description=description, priority=priority, **extra)
    if instance:
        raw["nextHopInstance"] = "https://www.googleapis.com/compute/v1/projects/proj/zones/%s/instances/%s" % (
            zone, instance)
    return parse_route(raw, P)


def wanted(*specs, prefix="podnet", priority=1000):
    return parse_wanted([dict(node=n, instance=n, zone="z1", dest_ranges=list(d)) for n, d in specs], P, prefix,
                        priority)


# ------------------------------------------------------------------------------------------ names

@pytest.mark.parametrize("cidr, encoded", [
    ("10.244.1.0/24", "10-244-1-0-24"),
    ("fd00:10:244:1::/64", "fd00-10-244-1---64"),
    ("FD00:0:0:1::/64", "fd00-0-0-1---64"),
    ("2001:db8:1:2:3:4:5:0/112", "2001-db8-1-2-3-4-5-0-112"),
    ("0.0.0.0/0", "0-0-0-0-0"),
])
def test_encode_cidr(cidr, encoded):
    assert encode_cidr(net(cidr)) == encoded


def test_route_names_primary_and_alternate():
    assert route_names("podnet", net("10.244.1.0/24")) == ("podnet-10-244-1-0-24", "podnet-10-244-1-0-24-b")
    assert route_names("prod", net("fd00:10:244:1::/64")) == ("prod-fd00-10-244-1---64", "prod-fd00-10-244-1---64-b")


def test_long_names_are_cut_with_a_hash_and_stay_valid():
    prefix = "a" * 30
    primary, alternate = route_names(prefix, net("2001:db8:aaaa:bbbb:cccc:dddd:eeee:0/112"))
    assert len(alternate) <= 63 and len(primary) <= 63
    assert gce_names.NAME_RE.match(primary) and gce_names.NAME_RE.match(alternate)
    assert primary.startswith(prefix + "-2001-db8")
    assert alternate == primary + "-b"
    # another network that shares the kept start still gets another name
    other = route_names(prefix, net("2001:db8:aaaa:bbbb:cccc:dddd:eeee:100/120"))
    assert other[0] != primary


networks = st.one_of(
    st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False), st.integers(0, 2 ** 32 - 1),
              st.integers(0, 32)).map(lambda n: n),
    st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False), st.integers(0, 2 ** 128 - 1),
              st.integers(0, 128)),
)
prefixes = st.from_regex(r"[a-z]([-a-z0-9]{0,28}[a-z0-9])?", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(prefixes, networks)
def test_every_name_is_a_valid_compute_engine_name(prefix, network):
    for name in route_names(prefix, network):
        assert len(name) <= 63, name
        assert gce_names.NAME_RE.match(name), name
        assert name.startswith(prefix + "-")


@settings(max_examples=200, deadline=None)
@given(prefixes, st.lists(networks, min_size=2, max_size=30, unique=True))
def test_names_are_unique_per_destination(prefix, nets):
    names = [n for network in nets for n in route_names(prefix, network)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("prefix, words", [
    ("", "empty"),
    ("Podnet", "not a valid"),
    ("1podnet", "not a valid"),
    ("podnet-", "not a valid"),
    ("pod_net", "not a valid"),
    ("a" * 31, "at most 30"),
])
def test_prefix_problems(prefix, words):
    assert words in prefix_problem(prefix)


def test_good_prefix():
    assert prefix_problem("podnet") is None and prefix_problem("k8s-prod-2") is None


def test_list_filter_is_a_whole_field_regex_on_the_name():
    assert gce_names.list_filter("podnet") == 'name eq "podnet-.*"'


# ------------------------------------------------------------------------------------------- URLs

@pytest.mark.parametrize("value, path", [
    ("k8s", NET),
    ("global/networks/k8s", NET),
    ("projects/host/global/networks/shared", "projects/host/global/networks/shared"),
    ("https://www.googleapis.com/compute/v1/projects/host/global/networks/shared",
     "projects/host/global/networks/shared"),
    ("https://compute.googleapis.com/compute/v1/projects/proj/global/networks/k8s/", NET),
])
def test_network_path(value, path):
    assert network_path(value, P) == path


def test_network_path_rejects_other_resources():
    with pytest.raises(ValueError, match="not a network"):
        network_path("projects/p/regions/r/subnetworks/s", P)


@pytest.mark.parametrize("value, zone, path", [
    ("vm1", "z1", "projects/proj/zones/z1/instances/vm1"),
    ("vm1", "https://www.googleapis.com/compute/v1/projects/proj/zones/z9", "projects/proj/zones/z9/instances/vm1"),
    ("zones/z2/instances/vm2", None, "projects/proj/zones/z2/instances/vm2"),
    ("projects/other/zones/z3/instances/vm3", "ignored", "projects/other/zones/z3/instances/vm3"),
    ("https://www.googleapis.com/compute/v1/projects/proj/zones/z1/instances/vm1", None,
     "projects/proj/zones/z1/instances/vm1"),
])
def test_instance_path(value, zone, path):
    assert instance_path(value, zone, P) == path


def test_instance_path_needs_a_zone_for_a_bare_name():
    with pytest.raises(ValueError, match="needs a zone"):
        instance_path("vm1", None, P)


# --------------------------------------------------------------------------------------- wanted

def test_parse_wanted_dual_stack():
    got = wanted(("node1", ["10.244.1.0/24", "fd00:10:244:1::/64"]), ("node2", ["10.244.2.0/24"]))
    assert sorted(map(str, got)) == ["10.244.1.0/24", "10.244.2.0/24", "fd00:10:244:1::/64"]
    w = got[net("fd00:10:244:1::/64")]
    assert (w.node, w.instance, w.priority) == ("node1", "projects/proj/zones/z1/instances/node1", 1000)
    assert w.body(w.names[0], NET, MARK) == {
        "name": "podnet-fd00-10-244-1---64", "network": NET, "destRange": "fd00:10:244:1::/64", "priority": 1000,
        "nextHopInstance": "projects/proj/zones/z1/instances/node1", "description": MARK}


def test_parse_wanted_lists_every_problem_naming_the_node():
    specs = [
        dict(node="node1", zone="z1", dest_ranges=["10.244.1.1/24", "bogus"]),
        dict(node="node2", zone="z1", dest_ranges=["10.244.2.0/24"]),
        dict(node="node3", instance="node2", zone="z1", dest_ranges=[]),
        dict(node="node4", zone="z1", dest_ranges=["10.244.2.0/24"]),
        dict(node="node5", dest_ranges=["10.244.5.0/24"]),
        dict(node="node2", zone="z1"),
        dict(node="Bad_VM", zone="z1"),
    ]
    with pytest.raises(GceInputError) as err:
        parse_wanted(specs, P, "podnet", 1000)
    problems = err.value.problems
    text = "\n".join(problems)
    assert "node node1: dest_ranges item 10.244.1.1/24 has host bits set (the network is 10.244.1.0/24)" in text
    assert "node node1: dest_ranges item 'bogus' is not a network" in text
    assert "node node3: instance z1/node2 is also the instance of node node2" in text
    assert "node node4: destination 10.244.2.0/24 is also wanted for node node2" in text
    assert "node node5: instance 'node5' is a bare name, so it needs a zone" in text
    assert "node node2 is listed twice" in text
    assert "node Bad_VM: instance name 'Bad_VM' is not a valid Compute Engine name" in text
    assert len(problems) == 7


# --------------------------------------------------------------------------------------- ownership

def test_ownership_needs_name_marker_and_network():
    mine = api_route("podnet-10-244-1-0-24", "10.244.1.0/24")
    assert is_owned(mine, "podnet", MARK, NET)
    assert is_owned(api_route("podnet-10-244-1-0-24-b", "10.244.1.0/24"), "podnet", MARK, NET)
    # another cluster whose prefix starts with ours
    assert not is_owned(api_route("podnet-prod-10-244-1-0-24", "10.244.1.0/24"), "podnet", MARK, NET)
    # the name of another destination
    assert not is_owned(api_route("podnet-10-244-1-0-24", "10.244.2.0/24"), "podnet", MARK, NET)
    assert not is_owned(api_route("podnet-10-244-1-0-24", "10.244.1.0/24", description=""), "podnet", MARK, NET)
    assert not is_owned(api_route("podnet-10-244-1-0-24", "10.244.1.0/24", network=NET_URL + "x"), "podnet", MARK,
                        NET)


def test_parse_route_reads_full_urls_and_compressed_ipv6():
    r = api_route("podnet-fd00-10-244-1---64", "fd00:10:244:1::/64", priority=900)
    assert (r.network, r.instance, r.priority, r.dest) == (NET, "projects/proj/zones/z1/instances/node1", 900,
                                                           net("fd00:10:244:1::/64"))
    partial = parse_route(dict(name="x", destRange="10.0.0.0/8", network=NET, nextHopInstance="zones/z/instances/i"),
                          P)
    assert partial.instance == "projects/proj/zones/z/instances/i" and partial.priority == 1000
    gw = parse_route(dict(name="y", destRange="0.0.0.0/0", network=NET, nextHopGateway="global/gateways/default"), P)
    assert gw.instance is None and gw.other_next_hop.startswith("nextHopGateway=")


# --------------------------------------------------------------------------------------------- plan

def test_plan_inserts_keeps_and_deletes_stale():
    want = wanted(("node1", ["10.244.1.0/24"]), ("node2", ["10.244.2.0/24"]))
    existing = [
        api_route("podnet-10-244-1-0-24", "10.244.1.0/24", instance="node1"),          # exact: kept
        api_route("podnet-10-244-9-0-24", "10.244.9.0/24", instance="gone"),           # stale: deleted
        api_route("other-10-244-2-0-24", "10.244.2.0/24", instance="node9", description=""),  # foreign: untouched
    ]
    plan = plan_routes(existing, want, "podnet", MARK, NET)
    assert [(i.name, i.want.node) for i in plan.inserts] == [("podnet-10-244-2-0-24", "node2")]
    assert [(d.route.name, d.reason) for d in plan.deletes] == [("podnet-10-244-9-0-24", "stale")]
    assert [r.name for r, _unused in plan.keep] == ["podnet-10-244-1-0-24"]
    assert not plan.conflicts and not plan.pre_deletes and plan.changed
    assert plan.before_lines() == ["podnet-10-244-1-0-24 10.244.1.0/24 via z1/node1 priority 1000  (node1)",
                                   "podnet-10-244-9-0-24 10.244.9.0/24 via z1/gone priority 1000"]
    assert plan.after_lines() == ["podnet-10-244-1-0-24 10.244.1.0/24 via z1/node1 priority 1000  (node1)",
                                  "podnet-10-244-2-0-24 10.244.2.0/24 via z1/node2 priority 1000  (node2)"]


def test_plan_of_the_wanted_state_changes_nothing():
    want = wanted(("node1", ["10.244.1.0/24", "fd00::/64"]))
    existing = [api_route("podnet-10-244-1-0-24", "10.244.1.0/24"), api_route("podnet-fd00---64", "fd00::/64")]
    plan = plan_routes(existing, want, "podnet", MARK, NET)
    assert not plan.changed and len(plan.keep) == 2
    assert plan.before_lines() == plan.after_lines()


def test_changed_next_hop_is_make_before_break_under_the_other_name():
    want = wanted(("node1", ["10.244.1.0/24"]))
    old = api_route("podnet-10-244-1-0-24", "10.244.1.0/24", instance="old-vm")
    plan = plan_routes([old], want, "podnet", MARK, NET)
    assert [(i.name, [r.name for r in i.replaces]) for i in plan.inserts] == [
        ("podnet-10-244-1-0-24-b", ["podnet-10-244-1-0-24"])]
    assert [(d.route.name, d.reason, d.node) for d in plan.deletes] == [("podnet-10-244-1-0-24", "replaced", "node1")]
    # the next change goes back to the primary name
    again = plan_routes([api_route("podnet-10-244-1-0-24-b", "10.244.1.0/24", instance="other")], want, "podnet",
                        MARK, NET)
    assert [i.name for i in again.inserts] == ["podnet-10-244-1-0-24"]
    assert [d.route.name for d in again.deletes] == ["podnet-10-244-1-0-24-b"]


def test_changed_priority_is_replaced_too():
    want = wanted(("node1", ["10.244.1.0/24"]), priority=900)
    plan = plan_routes([api_route("podnet-10-244-1-0-24", "10.244.1.0/24")], want, "podnet", MARK, NET)
    assert [i.name for i in plan.inserts] == ["podnet-10-244-1-0-24-b"]


def test_duplicate_owned_routes_keep_the_exact_one():
    want = wanted(("node1", ["10.244.1.0/24"]))
    existing = [api_route("podnet-10-244-1-0-24", "10.244.1.0/24", instance="old"),
                api_route("podnet-10-244-1-0-24-b", "10.244.1.0/24")]
    plan = plan_routes(existing, want, "podnet", MARK, NET)
    assert not plan.inserts
    assert [(d.route.name, d.reason) for d in plan.deletes] == [("podnet-10-244-1-0-24", "duplicate")]


def test_both_names_held_by_wrong_owned_routes_frees_the_alternate_first():
    want = wanted(("node1", ["10.244.1.0/24"]))
    existing = [api_route("podnet-10-244-1-0-24", "10.244.1.0/24", instance="a"),
                api_route("podnet-10-244-1-0-24-b", "10.244.1.0/24", instance="b")]
    plan = plan_routes(existing, want, "podnet", MARK, NET)
    assert [d.route.name for d in plan.pre_deletes] == ["podnet-10-244-1-0-24-b"]
    assert [i.name for i in plan.inserts] == ["podnet-10-244-1-0-24-b"]
    assert [d.route.name for d in plan.deletes] == ["podnet-10-244-1-0-24"]


def test_a_foreign_route_holding_our_name_is_a_conflict():
    want = wanted(("node1", ["10.244.1.0/24"]))
    foreign = api_route("podnet-10-244-1-0-24", "10.244.1.0/24", description="made by hand")
    plan = plan_routes([foreign], want, "podnet", MARK, NET)
    assert not plan.inserts and not plan.deletes
    assert len(plan.conflicts) == 1
    assert "node node1: route podnet-10-244-1-0-24 (wanted for 10.244.1.0/24)" in plan.conflicts[0]
    assert "description 'made by hand'" in plan.conflicts[0]
    other_net = api_route("podnet-10-244-1-0-24-b", "10.244.1.0/24", network=NET_URL.replace("k8s", "other"))
    assert "network projects/proj/global/networks/other" in plan_routes([other_net], want, "podnet", MARK,
                                                                        NET).conflicts[0]


def test_absent_deletes_only_owned_routes():
    existing = [api_route("podnet-10-244-1-0-24", "10.244.1.0/24"),
                api_route("podnet-10-244-2-0-24", "10.244.2.0/24", description="not ours"),
                api_route("podnet-prod-10-244-3-0-24", "10.244.3.0/24")]
    plan = plan_routes(existing, {}, "podnet", MARK, NET, state="absent")
    assert [(d.route.name, d.reason) for d in plan.deletes] == [("podnet-10-244-1-0-24", "absent")]
    assert not plan.inserts


# ---------------------------------------------------------------------------------------- instances

def instance(can_ip_forward=True, network=NET_URL, stack=None, ipv6=None):
    nic = {"name": "nic0", "network": network, "networkIP": "10.0.0.2"}
    if stack:
        nic["stackType"] = stack
    if ipv6:
        nic["ipv6Address"] = ipv6
    return {"name": "vm1", "canIpForward": can_ip_forward, "networkInterfaces": [nic]}


PATH = "projects/proj/zones/z1/instances/vm1"


def test_good_instance_has_no_problems():
    assert instance_problems("n1", PATH, instance(), NET, [4]) == []
    assert instance_problems("n1", PATH, instance(stack="IPV4_IPV6", ipv6="fd00::2"), NET, [4, 6]) == []


def test_instance_problems_say_how_to_fix():
    missing = instance_problems("n1", PATH, None, NET, [4])
    assert missing == ["node n1: instance z1/vm1 was not found in project proj; create it (with --can-ip-forward) or "
                       "set podnet_gce_instance and podnet_gce_zone of n1 to the node's VM"]
    noforward = instance_problems("n1", PATH, instance(can_ip_forward=False), NET, [4])
    assert len(noforward) == 1
    assert "node n1: instance z1/vm1 has canIpForward false" in noforward[0]
    assert "can only be set when the VM is created" in noforward[0]
    assert "gcloud compute instances create vm1 --zone z1 --can-ip-forward" in noforward[0]
    wrongnet = instance_problems("n1", PATH, instance(network=NET_URL + "2"), NET, [4])
    assert "has no network interface in projects/proj/global/networks/k8s (its interfaces are in: " \
           "projects/proj/global/networks/k8s2)" in wrongnet[0]
    no6 = instance_problems("n1", PATH, instance(), NET, [4, 6])
    assert "stackType IPV4_ONLY" in no6[0] and "--stack-type IPV4_IPV6" in no6[0]
    both = instance_problems("n1", PATH, instance(can_ip_forward=False, network=NET_URL + "2"), NET, [4])
    assert len(both) == 2


# -------------------------------------------------------------------------------------------- errors

def test_parse_error_reads_googles_error_shape():
    body = {"error": {"code": 403, "message": "Quota 'ROUTES' exceeded.  Limit: 5.0 globally.",
                      "errors": [{"reason": "quotaExceeded", "domain": "usageLimits", "message": "x"}]}}
    info = gce_client.parse_error(403, body)
    assert info == ErrorInfo(403, "quotaExceeded", "Quota 'ROUTES' exceeded.  Limit: 5.0 globally.")
    assert gce_client.is_quota(info) and not gce_client.is_retryable(info)
    assert gce_client.parse_error(502, "<html>Bad Gateway</html>").message == "<html>Bad Gateway</html>"


@pytest.mark.parametrize("status, reason, retry", [
    (503, "backendError", True), (500, "", True), (429, "rateLimitExceeded", True),
    (403, "rateLimitExceeded", True), (403, "userRateLimitExceeded", True), (403, "forbidden", False),
    (403, "quotaExceeded", False), (400, "invalid", False), (409, "alreadyExists", False), (404, "notFound", False),
])
def test_is_retryable(status, reason, retry):
    assert gce_client.is_retryable(ErrorInfo(status, reason, "m")) is retry


def test_backoff_grows_and_is_capped():
    assert [gce_client.backoff_delay(a) for a in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 2.0]
    assert gce_client.backoff_delay(20) == 8.0


def test_operation_errors():
    op = {"status": "DONE", "error": {"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'ROUTES' exceeded."}]},
          "httpErrorStatusCode": 403, "httpErrorMessage": "FORBIDDEN"}
    assert gce_client.operation_error_text(op) == "QUOTA_EXCEEDED: Quota 'ROUTES' exceeded. (HTTP 403 FORBIDDEN)"
    assert gce_client.operation_is_quota(op)
    assert not gce_client.operation_is_quota({"error": {"errors": [{"code": "RESOURCE_NOT_FOUND", "message": "gone"}]}})
    assert gce_client.operation_errors({"status": "DONE"}) == []


def test_quota_message_counts_routes_and_promises_no_deletion():
    want = wanted(("node7", ["10.244.7.0/24"]))[net("10.244.7.0/24")]
    text = gce_apply.quota_message(gce.Insert(want.names[0], want), "Quota 'ROUTES' exceeded.", 12, 5, 3, P, NET)
    assert text.startswith("Compute Engine quota refused route podnet-10-244-7-0-24 (10.244.7.0/24 for node node7)")
    assert "This cluster wants 12 route(s) in projects/proj/global/networks/k8s (5 already in place, 3 inserted" in text
    assert text.endswith("Nothing was deleted.")


def test_the_pure_logic_uses_the_standard_library_only():
    """gce and gce_names import the standard library and, of the collection, gce_names and text alone."""
    import ast
    import sys
    from pathlib import Path

    own = ("ansible_collections.podnet.cluster.plugins.module_utils.gce_names",
           "ansible_collections.podnet.cluster.plugins.module_utils.text")
    for module in (gce, gce_names):
        roots = set()
        for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module not in own:
                roots.add(node.module.split(".")[0])
        assert roots and roots <= set(sys.stdlib_module_names) | {"__future__"}, (module.__name__, roots)
