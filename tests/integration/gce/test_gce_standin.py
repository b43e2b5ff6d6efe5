# SPDX-License-Identifier: Apache-2.0
"""The Compute Engine API stand-in itself (tests/lib/gce_standin.py) and the client of the module
(plugins/module_utils/gce_client.py) against it, over real HTTP on loopback; the lab hook in a scratch
network namespace (real kernel routes, never the machine's own namespace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from ansible_collections.podnet.cluster.plugins.module_utils import gce_client
from ansible_collections.podnet.cluster.plugins.module_utils.gce_client import ApiError, ComputeClient, OperationTimeout
from gce_lib import NETWORK, PROJECT, REPO, TOKEN, make_standin
from lib.gce_standin import ApiFault, NetnsRouteSync, compile_filter
from lib.labtools import remove_stale_namespaces

NS_PREFIX = "podnet-t-gce-"
AUTH = {"Authorization": "Bearer " + TOKEN}


def client(standin, **kwargs):
    session = gce_client.build_session("accesstoken", None, TOKEN, [])
    return ComputeClient(session, standin.endpoint, PROJECT, **kwargs)


def body(name, dest, instance="node1", zone="lab-a", **extra):
    return dict(name=name, destRange=dest, network="global/networks/" + NETWORK,
                nextHopInstance="zones/%s/instances/%s" % (zone, instance), priority=1000, description="t", **extra)


# ------------------------------------------------------------------------------------ the API surface

def test_bearer_token_is_required(standin):
    url = standin.endpoint + "projects/%s/global/routes" % PROJECT
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = requests.get(url, headers=headers, timeout=10)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == 401
    assert requests.get(url, headers=AUTH, timeout=10).status_code == 200


def test_filter_subset():
    route = {"name": "podnet-10-0-0-0-24", "description": "m (x)", "priority": 1000, "network": "u/lab-net"}
    assert compile_filter('name eq "podnet-.*"')(route)
    assert not compile_filter('name eq "podnet"')(route)           # the regex must match the whole field
    assert compile_filter("name ne other-.*")(route)
    assert compile_filter('(name eq "podnet-.*") (network eq ".*/lab-net")')(route)
    assert not compile_filter('(name eq "podnet-.*") (network eq ".*/other")')(route)
    assert compile_filter('description = "m (x)"')(route)
    assert compile_filter("priority != 900")(route)
    with pytest.raises(ApiFault):
        compile_filter("name ~ x")


def test_list_pages_follow_next_page_token(standin):
    for i in range(5):
        standin.add_route("podnet-10-0-%d-0-24" % i, "10.0.%d.0/24" % i, network=NETWORK, instance="node1")
    standin.add_route("other-1", "10.9.0.0/24", network=NETWORK, instance="node1")
    url = standin.endpoint + "projects/%s/global/routes" % PROJECT
    params = {"maxResults": 2, "filter": 'name eq "podnet-.*"'}
    names, pages = [], 0
    while True:
        page = requests.get(url, headers=AUTH, params=params, timeout=10).json()
        pages += 1
        names += [r["name"] for r in page["items"]]
        if "nextPageToken" not in page:
            break
        params["pageToken"] = page["nextPageToken"]
    assert pages == 3 and names == ["podnet-10-0-%d-0-24" % i for i in range(5)]
    assert requests.get(url, headers=AUTH, params={"maxResults": 501}, timeout=10).status_code == 400
    bad = requests.get(url, headers=AUTH, params={"pageToken": "nonsense"}, timeout=10)
    assert bad.status_code == 400 and "pageToken" in bad.json()["error"]["message"]
    assert [r["name"] for r in client(standin).list_routes('name eq "podnet-.*"', max_results=2)] == names


def test_operations_go_pending_running_done_and_only_then_act(standin):
    standin.faults.operation_polls = 3
    api = client(standin)
    op = api.insert_route(body("podnet-10-244-1-0-24", "10.244.1.0/24"))
    assert op["status"] == "PENDING" and op["operationType"] == "insert"
    path = "projects/%s/global/operations/%s" % (PROJECT, op["name"])
    seen = [op["status"]]
    while seen[-1] != "DONE":
        assert api.get_route("podnet-10-244-1-0-24") is None      # not there before DONE
        seen.append(api.call("GET", path)["status"])
    assert seen == ["PENDING", "RUNNING", "RUNNING", "RUNNING", "DONE"]
    route = api.get_route("podnet-10-244-1-0-24")
    assert route["nextHopInstance"] == \
        "https://www.googleapis.com/compute/v1/projects/podnet-lab/zones/lab-a/instances/node1"
    with pytest.raises(ApiError) as err:
        api.insert_route(body("podnet-10-244-1-0-24", "10.244.1.0/24"))
    assert err.value.status == 409 and err.value.reason == "alreadyExists"
    done = api.wait(api.delete_route("podnet-10-244-1-0-24"), timeout=10, method="wait")
    assert done["status"] == "DONE" and "error" not in done
    assert api.delete_route("podnet-10-244-1-0-24") is None         # already gone
    assert [e[1:] for e in standin.events] == [("insert", "podnet-10-244-1-0-24", None),
                                               ("delete", "podnet-10-244-1-0-24", None)]


def test_operation_timeout(standin):
    standin.faults.operation_polls = 10 ** 6
    api = client(standin)
    op = api.insert_route(body("podnet-10-244-1-0-24", "10.244.1.0/24"))
    with pytest.raises(OperationTimeout, match="is still RUNNING after 0.3s"):
        api.wait(op, timeout=0.3, method="get")


def test_client_retries_503_with_growing_backoff_and_honours_retry_after(standin):
    delays = []
    standin.faults.fail_next = 4
    api = client(standin, sleep=delays.append)
    assert api.list_routes(None) == []
    assert api.retries == 4 and api.requests == 5
    assert delays == sorted(delays) and delays[0] < 0.4 and delays[-1] > 1.4
    delays.clear()
    standin.faults.fail_next, standin.faults.retry_after = 1, "3"
    api.list_routes(None)
    assert delays == [3.0]


def test_client_gives_up_at_the_deadline_and_never_retries_quota(standin):
    standin.faults.fail_next = 10 ** 6
    api = client(standin, retry_deadline=0.6)
    with pytest.raises(ApiError, match=r"HTTP 503 backendError.*gave up after \d attempt"):
        api.list_routes(None)
    standin.faults.fail_next = 0
    standin.faults.quota_limit = 0
    before = api.requests
    with pytest.raises(ApiError) as err:
        api.insert_route(body("podnet-10-244-1-0-24", "10.244.1.0/24"))
    assert err.value.status == 403 and err.value.reason == "quotaExceeded"
    assert api.requests == before + 1


def test_an_insert_naming_a_missing_instance_ends_with_an_operation_error(standin):
    api = client(standin)
    done = api.wait(api.insert_route(body("podnet-10-244-1-0-24", "10.244.1.0/24", instance="nope")), timeout=10)
    assert done["error"]["errors"][0]["code"] == "RESOURCE_NOT_FOUND"
    assert api.get_route("podnet-10-244-1-0-24") is None


# ------------------------------------------------------------------------------- the lab's hook

@pytest.fixture
def scratch_ns():
    remove_stale_namespaces(NS_PREFIX)
    name = "%s%d" % (NS_PREFIX, os.getpid())
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "add", "lan0", "type", "veth", "peer", "name", "lan1"], ["link", "set", "lan1", "up"],
                    ["link", "set", "lan0", "up"],
                    ["addr", "add", "10.10.0.1/24", "dev", "lan0"],
                    ["addr", "add", "fd10::1/64", "dev", "lan0", "nodad"]):
            subprocess.run(["ip", "-n", name] + cmd, check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def ns_routes(ns):
    out = {}
    for fam in ("-4", "-6"):
        text = subprocess.run(["ip", "-n", ns, "-j", fam, "route", "show", "proto", "158"], capture_output=True,
                              text=True, check=True).stdout
        for r in json.loads(text or "[]"):
            out[r["dst"]] = r.get("gateway")
    return out


def test_hook_programs_the_lab_router_namespace(scratch_ns):
    sync = NetnsRouteSync(scratch_ns)
    with make_standin(hook=sync) as standin:
        api = client(standin)
        api.wait(api.insert_route(body("podnet-10-244-1-0-24", "10.244.1.0/24")), 10)
        api.wait(api.insert_route(body("podnet-fd00-1---64", "fd00:1::/64")), 10)
        assert ns_routes(scratch_ns) == {"10.244.1.0/24": "10.10.0.11", "fd00:1::/64": "fd10::11"}
        # make-before-break: the new route (node2) first, then the old one goes; the kernel route follows
        api.wait(api.insert_route(body("podnet-10-244-1-0-24-b", "10.244.1.0/24", instance="node2")), 10)
        api.wait(api.delete_route("podnet-10-244-1-0-24"), 10)
        assert ns_routes(scratch_ns)["10.244.1.0/24"] == "10.10.0.12"
        api.wait(api.delete_route("podnet-10-244-1-0-24-b"), 10)
        api.wait(api.delete_route("podnet-fd00-1---64"), 10)
        assert ns_routes(scratch_ns) == {}
        assert standin.hook_errors == []
    assert all(argv[:3] == ["ip", "-n", scratch_ns] for argv in sync.applied) and len(sync.applied) == 6


def test_hook_refuses_a_missing_namespace():
    for name in ("", "podnet-t-gce-no-such-ns", "-n"):
        with pytest.raises(ValueError):
            NetnsRouteSync(name)


# ------------------------------------------------------------------------------- as a process

def test_serve_in_the_background_and_stop(tmp_path):
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps([{"name": "vm1", "zone": "lab-a", "network": NETWORK, "network_ip": "10.10.0.5"}]))
    state = tmp_path / "standin"
    script = str(REPO / "tests" / "lib" / "gce_standin.py")
    subprocess.run([sys.executable, script, "serve", "--state-dir", str(state), "--instances", str(instances),
                    "--background"], check=True, timeout=30)
    pid = int((state / "pid").read_text())
    try:
        endpoint = (state / "endpoint").read_text().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        got = requests.get(endpoint + "projects/%s/zones/lab-a/instances/vm1" % PROJECT, headers=AUTH, timeout=10)
        assert got.status_code == 200 and got.json()["networkInterfaces"][0]["networkIP"] == "10.10.0.5"
    finally:
        subprocess.run([sys.executable, script, "stop", "--state-dir", str(state)], check=True, timeout=30)
    for _unused in range(50):
        if not os.path.exists("/proc/%d" % pid):
            break
        time.sleep(0.1)
    assert not os.path.exists("/proc/%d" % pid)
    assert not (state / "pid").exists()
