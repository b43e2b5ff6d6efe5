# SPDX-License-Identifier: Apache-2.0
"""The real podnet.cluster.gce_routes module, run by ansible-playbook (run_once, delegate_to localhost) on an
inventory of three lab nodes, against the Compute Engine API stand-in (tests/lib/gce_standin.py) on loopback,
with auth_kind accesstoken. Each test reads the API's state and request log back from the stand-in."""

from __future__ import annotations

from gce_lib import CIDRS, MARKER, NAMES, NET_PATH, NETWORK, run_gce, route_summary, wanted_summary

WRITES = ("POST", "DELETE")


def api_writes(standin):
    return [(r.method, r.path) for r in standin.requests() if r.method in WRITES and "/global/routes" in r.path]


def test_converge_dual_stack_then_idempotent_with_diff(tmp_path, standin):
    run = run_gce(tmp_path, standin, diff=True)
    assert not run.failed and run.changed, run.text
    assert route_summary(standin) == wanted_summary()
    route = standin.route_table()["podnet-fd00-244-0-3---64"]
    assert route["nextHopInstance"].endswith("/projects/podnet-lab/zones/lab-b/instances/node3")
    assert route["network"].endswith(NET_PATH) and route["destRange"] == "fd00:244:0:3::/64"
    assert sorted(i["name"] for i in run.result["inserted"]) == sorted(n for ns in NAMES.values() for n in ns)
    assert run.result["deleted"] == [] and run.result["wanted"] == 6
    assert run.result["diff"]["before"] == ""
    assert run.result["diff"]["after"].splitlines() == [
        "podnet-10-244-1-0-24 10.244.1.0/24 via lab-a/node1 priority 1000  (node1)",
        "podnet-10-244-2-0-24 10.244.2.0/24 via lab-a/node2 priority 1000  (node2)",
        "podnet-10-244-3-0-24 10.244.3.0/24 via lab-b/node3 priority 1000  (node3)",
        "podnet-fd00-244-0-1---64 fd00:244:0:1::/64 via lab-a/node1 priority 1000  (node1)",
        "podnet-fd00-244-0-2---64 fd00:244:0:2::/64 via lab-a/node2 priority 1000  (node2)",
        "podnet-fd00-244-0-3---64 fd00:244:0:3::/64 via lab-b/node3 priority 1000  (node3)",
    ]
    # every insert waited on its operation until DONE
    assert [e[1:] for e in standin.events] and all(e[3] is None for e in standin.events)
    assert len(standin.events) == 6

    writes_before = len(api_writes(standin))
    again = run_gce(tmp_path, standin, diff=True)
    assert not again.failed and not again.changed, again.text
    assert len(api_writes(standin)) == writes_before
    assert again.result["diff"]["before"] == again.result["diff"]["after"] == run.result["diff"]["after"]
    assert again.result["inserted"] == [] and again.result["deleted"] == []


def test_check_mode_only_reads_and_diff_shows_before_and_after(tmp_path, standin):
    standin.add_route("podnet-10-244-9-0-24", "10.244.9.0/24", network=NETWORK, instance="gone-vm",
                      description=MARKER)
    run = run_gce(tmp_path, standin, check=True, diff=True)
    assert not run.failed and run.changed, run.text
    assert api_writes(standin) == []
    assert set(route_summary(standin)) == {"podnet-10-244-9-0-24"}
    assert {r.method for r in standin.requests()} == {"GET"}
    assert [d["name"] for d in run.result["deleted"]] == ["podnet-10-244-9-0-24"]
    assert run.result["deleted"][0]["reason"] == "stale"
    assert len(run.result["inserted"]) == 6
    diff = run.result["diff"]
    assert diff["before"] == "podnet-10-244-9-0-24 10.244.9.0/24 via lab-a/gone-vm priority 1000\n"
    assert "podnet-10-244-9-0-24" not in diff["after"]
    assert "podnet-10-244-2-0-24 10.244.2.0/24 via lab-a/node2 priority 1000  (node2)" in diff["after"]


def test_pagination_reads_every_page(tmp_path, standin):
    # 10 routes under our prefix: kept, stale and foreign ones spread over 4 pages of 3
    for node in ("node1", "node2"):
        for cidr, name in zip(CIDRS[node], NAMES[node]):
            standin.add_route(name, cidr, network=NETWORK, instance=node, description=MARKER,
                              zone="lab-a")
    for i in range(4):
        standin.add_route("podnet-10-250-%d-0-24" % i, "10.250.%d.0/24" % i, network=NETWORK, instance="old",
                          description=MARKER)
    standin.add_route("podnet-zz-foreign", "10.251.0.0/24", network=NETWORK, instance="node1")
    standin.add_route("podnet-zzz-10-244-3-0-24", "10.244.3.0/24", network=NETWORK, instance="node3",
                      description=MARKER)
    assert len(standin.route_table()) == 10
    run = run_gce(tmp_path, standin, args={"page_size": 3})
    assert not run.failed, run.text
    lists = [r for r in standin.requests("GET") if r.path.endswith("/global/routes")]
    assert [r.params.get("maxResults") for r in lists] == ["3"] * 4
    assert [bool(r.params.get("pageToken")) for r in lists] == [False, True, True, True]
    assert all(r.params["filter"] == 'name eq "podnet-.*"' for r in lists)
    # the kept routes (first pages) were not inserted again; the stale ones (middle) were deleted
    assert sorted(i["name"] for i in run.result["inserted"]) == NAMES["node3"]
    assert sorted(d["name"] for d in run.result["deleted"]) == ["podnet-10-250-%d-0-24" % i for i in range(4)]
    table = route_summary(standin)
    assert {k: v for k, v in table.items() if k.startswith("podnet-zz")} == {
        "podnet-zz-foreign": ("10.251.0.0/24", "node1", 1000, ""),
        "podnet-zzz-10-244-3-0-24": ("10.244.3.0/24", "node3", 1000, MARKER)}
    again = run_gce(tmp_path, standin, args={"page_size": 3})
    assert not again.failed and not again.changed, again.text


def test_slow_operations_are_waited_for_with_wait_and_with_get(tmp_path, standin):
    standin.faults.operation_polls = 6
    standin.faults.wait_delay = 0.02
    run = run_gce(tmp_path, standin, cidrs={"node1": CIDRS["node1"]})
    assert not run.failed and run.changed, run.text
    waits = [r for r in standin.requests("POST") if r.path.endswith("/wait")]
    assert len(waits) == 2 * 7          # RUNNING, 5 more RUNNING, DONE - for each of the 2 inserts
    assert set(route_summary(standin)) == set(NAMES["node1"])

    standin.faults.operation_polls = 4
    gone = run_gce(tmp_path, standin, cidrs={"node1": []}, args={"operation_poll": "get"})
    assert not gone.failed and gone.changed, gone.text
    gets = [r for r in standin.requests("GET") if "/global/operations/" in r.path]
    assert len(gets) == 2 * 5
    assert route_summary(standin) == {}


def test_409_on_an_identical_route_counts_as_success(tmp_path, standin):
    # someone inserts exactly our route between our list and our insert
    standin.faults.conflict_on_insert["podnet-10-244-2-0-24"] = {}
    run = run_gce(tmp_path, standin)
    assert not run.failed, run.text
    assert run.result["adopted"] == ["podnet-10-244-2-0-24"]
    assert "podnet-10-244-2-0-24" not in [i["name"] for i in run.result["inserted"]]
    posts = [r for r in standin.requests("POST") if r.path.endswith("/global/routes")]
    assert [r.status for r in posts if r.body["name"] == "podnet-10-244-2-0-24"] == [409]
    assert route_summary(standin) == wanted_summary()


def test_a_retried_insert_whose_first_attempt_is_still_in_flight_succeeds(tmp_path, standin):
    """The first insert is accepted but its answer is lost (503); the retry meets 409, the route reads 404 while that
    insert is in flight: waited for, then counted as inserted - not reported as a foreign route."""
    standin.faults.lose_insert_response["podnet-10-244-2-0-24"] = 1.5
    run = run_gce(tmp_path, standin)
    assert not run.failed, run.text
    posts = [r for r in standin.requests("POST") if r.path.endswith("/global/routes")]
    assert [r.status for r in posts if r.body["name"] == "podnet-10-244-2-0-24"] == [503, 409]
    gets = [r for r in standin.requests("GET") if r.path.endswith("/routes/podnet-10-244-2-0-24")]
    assert gets[0].status == 404 and gets[-1].status == 200
    assert "podnet-10-244-2-0-24" in [i["name"] for i in run.result["inserted"]]
    assert run.result["adopted"] == [] and run.changed
    assert route_summary(standin) == wanted_summary()


def test_a_slow_operation_wait_is_not_cut_by_the_request_timeout(tmp_path, standin):
    """globalOperations.wait held longer than request_timeout: the wait request may take that long (no retries)."""
    standin.faults.wait_delay = 2.0
    run = run_gce(tmp_path, standin, cidrs={"node1": CIDRS["node1"]},
                  args={"request_timeout": 1, "retry_deadline": 4})
    assert not run.failed, run.text
    assert run.result["api_requests"]["retries"] == 0, run.result["api_requests"]
    assert set(route_summary(standin)) == set(NAMES["node1"])


def test_409_on_a_different_route_fails_naming_it(tmp_path, standin):
    standin.add_route("podnet-10-250-0-0-24", "10.250.0.0/24", network=NETWORK, instance="old", description=MARKER)
    standin.faults.conflict_on_insert["podnet-10-244-2-0-24"] = {"description": "hand-made by ops",
                                                                 "nextHopInstance": "zones/lab-a/instances/node1"}
    run = run_gce(tmp_path, standin)
    assert run.failed, run.text
    msg = run.msg
    assert "route podnet-10-244-2-0-24 for node node2 (10.244.2.0/24 via lab-a/node2) already exists and differs" in msg
    assert "description 'hand-made by ops'" in msg and "via lab-a/node1" in msg
    assert "The API said: The resource 'projects/podnet-lab/global/routes/podnet-10-244-2-0-24' already exists" in msg
    # the foreign route is untouched and no deletion ran after the failed insert
    assert route_summary(standin)["podnet-10-244-2-0-24"][3] == "hand-made by ops"
    assert "podnet-10-250-0-0-24" in standin.route_table()
    assert not standin.requests("DELETE")


def test_quota_refusal_fails_with_the_count_and_deletes_nothing(tmp_path, standin):
    standin.add_route("podnet-10-250-0-0-24", "10.250.0.0/24", network=NETWORK, instance="old", description=MARKER)
    standin.add_route("someone-else", "192.168.0.0/24", network=NETWORK, nextHopIp="10.10.0.99")
    standin.faults.quota_limit = 4
    run = run_gce(tmp_path, standin, args={"concurrency": 1})
    assert run.failed, run.text
    assert run.result["quota_exceeded"] is True
    msg = run.msg
    assert "Compute Engine quota refused route" in msg
    assert "Quota 'ROUTES' exceeded.  Limit: 4.0 globally." in msg
    assert "This cluster wants 6 route(s) in projects/podnet-lab/global/networks/lab-net (0 already in place, 2 " \
           "inserted by this run before the refusal)" in msg
    assert "Nothing was deleted." in msg
    assert not standin.requests("DELETE")
    assert {"podnet-10-250-0-0-24", "someone-else"} <= set(standin.route_table())
    # the refused insert was the last one tried: the others were not attempted
    posts = [r for r in standin.requests("POST") if r.path.endswith("/global/routes")]
    assert [r.status for r in posts] == [200, 200, 403]


def test_503_is_retried_with_backoff_until_it_succeeds(tmp_path, standin):
    standin.faults.fail_next = 3
    run = run_gce(tmp_path, standin)
    assert not run.failed, run.text
    assert run.result["api_requests"]["retries"] == 3
    assert [r.status for r in standin.requests()[:4]] == [503, 503, 503, 200]
    assert route_summary(standin) == wanted_summary()


def test_503_beyond_the_retry_deadline_fails_with_the_apis_message(tmp_path, standin):
    standin.faults.fail_next = 10 ** 6
    run = run_gce(tmp_path, standin, args={"retry_deadline": 1})
    assert run.failed, run.text
    assert "listing the routes of project podnet-lab failed" in run.msg
    assert "HTTP 503 backendError: Backend Error (injected)" in run.msg
    assert "gave up after" in run.msg and "retry deadline of 1s" in run.msg
    assert 2 <= len(standin.requests()) <= 8


def test_instances_that_cannot_forward_are_all_listed_before_any_write(tmp_path, standin):
    standin.add_instance("node2", zone="lab-a", network=NETWORK, network_ip="10.10.0.12", ipv6_address="fd10::12",
                         can_ip_forward=False)
    standin.add_instance("node3", zone="lab-b", network="other-net", network_ip="10.10.0.13")
    cidrs = dict(CIDRS, node4=["10.244.4.0/24"])
    run = run_gce(tmp_path, standin, cidrs=cidrs, args={"concurrency": 2})
    assert run.failed, run.text
    problems = run.result["instance_problems"]
    assert len(problems) == 3, problems
    text = "\n".join(problems)
    assert "node node2: instance lab-a/node2 has canIpForward false" in text
    assert "canIpForward can only be set when the VM is created" in text
    assert "node node3: instance lab-b/node3 has no network interface in projects/podnet-lab/global/networks/lab-net " \
           "(its interfaces are in: projects/podnet-lab/global/networks/other-net)" in text
    assert "node node4: instance lab-a/node4 was not found in project podnet-lab" in text
    assert "3 node instance problem(s)" in run.msg and "nothing was changed" in run.msg
    assert api_writes(standin) == []
    assert len([r for r in standin.requests("GET") if "/instances/" in r.path]) == 4


def test_ipv6_routes_need_a_dual_stack_instance(tmp_path, standin):
    standin.add_instance("node1", zone="lab-a", network=NETWORK, network_ip="10.10.0.11")
    run = run_gce(tmp_path, standin)
    assert run.failed, run.text
    assert "node node1: instance lab-a/node1: interface nic0 has stackType IPV4_ONLY" in run.msg
    assert api_writes(standin) == []
    v4only = run_gce(tmp_path, standin, cidrs={"node1": ["10.244.1.0/24"]})
    assert not v4only.failed, v4only.text


def test_changed_next_hop_is_make_before_break(tmp_path, standin):
    assert not run_gce(tmp_path, standin).failed
    standin.add_instance("node2-new", zone="lab-b", network=NETWORK, network_ip="10.10.0.22", ipv6_address="fd10::22")
    start = standin.requests()[-1].seq
    moved = {"node2": {"podnet_gce_instance": "node2-new", "podnet_gce_zone": "lab-b"}}
    run = run_gce(tmp_path, standin, host_vars=moved, diff=True)
    assert not run.failed and run.changed, run.text
    assert sorted((i["name"], i["replaces"][0]) for i in run.result["inserted"]) == sorted(
        (n + "-b", n) for n in NAMES["node2"])
    assert sorted((d["name"], d["reason"]) for d in run.result["deleted"]) == sorted(
        (n, "replaced") for n in NAMES["node2"])
    # order in the stand-in: each new route's insert operation is DONE before the old route's delete request
    done = {name: seq for seq, kind, name, err in standin.events if kind == "insert" and seq > start}
    deletes = {r.path.rsplit("/", 1)[-1]: r.seq for r in standin.requests("DELETE")}
    for old in NAMES["node2"]:
        assert done[old + "-b"] < deletes[old], (done, deletes)
    assert max(done.values()) < min(deletes.values())
    want = wanted_summary(instances={"node2": "node2-new"})
    want = {(k + "-b" if k in NAMES["node2"] else k): v for k, v in want.items()}
    assert route_summary(standin) == want
    assert "podnet-10-244-2-0-24 10.244.2.0/24 via lab-a/node2 priority 1000  (node2)" in run.result["diff"]["before"]
    assert "podnet-10-244-2-0-24-b 10.244.2.0/24 via lab-b/node2-new priority 1000  (node2)" in \
        run.result["diff"]["after"]
    assert not run_gce(tmp_path, standin, host_vars=moved).changed


def test_foreign_routes_survive_present_and_absent(tmp_path, standin):
    foreign = {
        "other-10-244-1-0-24": dict(dest_range="10.244.1.0/24", instance="node1", description=MARKER),
        "podnet-10-99-0-0-24": dict(dest_range="10.99.0.0/24", instance="node1", description="not ours"),
        "podnet-prod-10-244-3-0-24": dict(dest_range="10.244.3.0/24", instance="node3", description=MARKER),
        "podnet-10-98-0-0-24": dict(dest_range="10.98.0.0/24", instance="node1", description=MARKER,
                                    network="projects/podnet-lab/global/networks/elsewhere"),
    }
    for name, spec in foreign.items():
        spec = dict(spec)
        standin.add_route(name, spec.pop("dest_range"), network=spec.pop("network", NETWORK), **spec)
    before = dict(route_summary(standin))
    run = run_gce(tmp_path, standin)
    assert not run.failed and run.changed, run.text
    assert run.result["deleted"] == []
    table = route_summary(standin)
    assert {k: table[k] for k in foreign} == before
    assert set(table) == set(foreign) | set(wanted_summary())

    gone = run_gce(tmp_path, standin, args={"state": "absent", "routes": None}, diff=True)
    assert not gone.failed and gone.changed, gone.text
    assert sorted(d["name"] for d in gone.result["deleted"]) == sorted(wanted_summary())
    assert route_summary(standin) == before
    assert gone.result["diff"]["after"] == ""
    assert not run_gce(tmp_path, standin, args={"state": "absent", "routes": None}).changed


def test_a_foreign_route_holding_our_name_fails_in_the_read_phase(tmp_path, standin):
    standin.add_route("podnet-10-244-2-0-24", "10.244.2.0/24", network=NETWORK, instance="node2",
                      description="created by hand")
    for check in (True, False):
        run = run_gce(tmp_path, standin, check=check)
        assert run.failed, run.text
        assert "route name(s) the collection needs are held by routes it does not own" in run.msg
        assert "node node2: route podnet-10-244-2-0-24 (wanted for 10.244.2.0/24) already exists" in run.msg
        assert "description 'created by hand'" in run.msg
    assert api_writes(standin) == []


def test_an_operation_that_ends_with_an_error_is_reported(tmp_path, standin):
    standin.faults.operation_errors["podnet-fd00-244-0-3---64"] = ("RESOURCE_NOT_READY",
                                                                   "The resource is not ready (injected)")
    run = run_gce(tmp_path, standin)
    assert run.failed, run.text
    assert "inserting route podnet-fd00-244-0-3---64 (fd00:244:0:3::/64 via lab-b/node3) for node node3 ended with " \
           "an error: RESOURCE_NOT_READY: The resource is not ready (injected) (HTTP 400 BAD REQUEST)" in run.msg
    assert "podnet-fd00-244-0-3---64" not in standin.route_table()
    assert len(standin.route_table()) == 5
    standin.faults.operation_errors.clear()
    retry = run_gce(tmp_path, standin)
    assert not retry.failed and [i["name"] for i in retry.result["inserted"]] == ["podnet-fd00-244-0-3---64"]


def test_a_wrong_token_is_refused(tmp_path, standin):
    run = run_gce(tmp_path, standin, args={"access_token": "not-the-token"})
    assert run.failed, run.text
    assert "HTTP 401" in run.msg and "the credentials were refused" in run.msg
    assert "not-the-token" not in run.proc.stdout
    assert standin.route_table() == {}


def test_bad_input_fails_before_any_request(tmp_path, standin):
    cidrs = dict(CIDRS, node2=["10.244.2.7/24"], node3=["10.244.1.0/24"])
    run = run_gce(tmp_path, standin, cidrs=cidrs, args={"route_prefix": "Podnet", "priority": 70000})
    assert run.failed, run.text
    problems = run.result["problems"]
    assert any("route_prefix 'Podnet'" in p for p in problems)
    assert any("priority 70000 is outside 0..65535" in p for p in problems)
    run = run_gce(tmp_path, standin, cidrs=cidrs)
    assert "node node2: dest_ranges item 10.244.2.7/24 has host bits set (the network is 10.244.2.0/24)" in run.msg
    assert "node node3: destination 10.244.1.0/24 is also wanted for node node1" in run.msg
    assert standin.requests() == []
