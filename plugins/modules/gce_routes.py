#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gce_routes
short_description: Reconcile one Compute Engine route per node pod subnet, for the whole cluster in one call
description:
  - Makes the Compute Engine routes that podnet.cluster owns in I(network) exactly one route per wanted destination
    (every pod CIDR of every node, IPv4 and IPv6), each with C(nextHopInstance) the node's VM and priority
    I(priority). This is the fabric side of C(podnet_fabric=gce), the Kubernetes "GCE advanced routing" recipe.
  - Runs once for the whole cluster on the controller (C(run_once=true), C(delegate_to=localhost)); never one task
    per route. Talks to the Compute Engine v1 REST API through google-auth and requests.
  - Reads first, writes after. It lists the routes whose name starts with I(route_prefix) (C(routes.list) with a
    C(filter), following C(nextPageToken)), calls C(instances.get) for every node's VM, computes the whole plan, and
    only then inserts and deletes, I(concurrency) requests at a time, waiting on each global operation
    (C(globalOperations.wait), or C(get) polling) until it is DONE.
  - B(Ownership.) A route is the collection's only when its network is I(network), its description is exactly
    I(description), and its name is one of the two names the collection gives the route's own destination (so
    the route of another cluster whose prefix merely starts with ours is not ours). Only owned routes are ever
    deleted. A route that is not owned but holds one of our names is reported as a conflict before any write.
  - B(Names.) Deterministic and unique per destination, valid Compute Engine names (at most 63 characters, a
    lower-case letter, then lower-case letters, digits and dashes, no dash at the end) - I(route_prefix), a dash,
    and the network with C(.), C(:) and C(/) turned into dashes (C(podnet-10-244-1-0-24),
    C(podnet-fd00-10-244-1---64)). A name that would be longer keeps the start of
    the network and ends with 8 hex digits of its SHA-256. Each destination has a second name with the suffix
    C(-b).
  - B(Make-before-break.) Routes are immutable, so a changed next hop (or priority) is a new route; it is inserted
    under the destination's name that is not in use, and the old route is deleted only after every insert has
    finished. If any insert fails, nothing is deleted.
  - B(Errors), each naming the node, the route and the API's message. HTTP 409 on insert - the existing route is
    read back; identical counts as success, anything else fails naming that foreign route. A 409 whose route cannot
    be read yet (404, an insert of that name still in flight, typically this one, retried after its first attempt
    was accepted and its answer lost) is waited for, up to I(operation_timeout), then judged the same way. HTTP 403 quota (or an
    operation ending with C(QUOTA_EXCEEDED)) - fails saying how many routes the cluster wants and that the quota
    refused them; further inserts stop and nothing is deleted. HTTP 429, 5xx, the 403 rate-limit reasons and
    connection errors - retried with exponential backoff and jitter until I(retry_deadline). An operation that
    ends with an error is reported with its error codes and messages.
  - B(Instances.) Every node's VM must exist, have C(canIpForward=true) (it can only be set when the VM is created)
    and a network interface in I(network); for IPv6 destinations that interface must be dual-stack or IPv6-only.
    Every failing instance is listed, with how to fix it, before any write.
  - B(IPv6.) The Route resource takes IPv6 C(destRange)s (displayed RFC 5952 compressed); IPv6 pod CIDRs are sent
    exactly like IPv4 ones, with C(nextHopInstance), and compared as parsed networks. The next-hop VM needs an IPv6
    address on its interface in I(network) (a dual-stack or IPv6-only interface); the instance check requires it.
    What the API documentation says about IPv6 and next-hop types is summed up in the collection's docs/gce.md.
version_added: 0.2.0
author:
  - podnet.cluster maintainers (!UNKNOWN)
requirements:
  - google-auth
  - requests
options:
  project:
    description: The project that holds the routes (and, unless an instance is given as a URL, the instances).
    type: str
    required: true
  network:
    description:
      - The VPC network of the routes (C(podnet_gce_network)) - a name, C(global/networks/NAME), or a partial or full
        URL (C(projects/HOST_PROJECT/global/networks/NAME) for a Shared VPC).
    type: str
    required: true
  routes:
    description:
      - The wanted routes, one entry per node. Ignored when I(state=absent). An empty list with I(state=present)
        deletes every owned route.
    type: list
    elements: dict
    default: []
    suboptions:
      node:
        description: The node's inventory name (for messages; must be unique).
        type: str
        required: true
      instance:
        description:
          - The node's VM - a name (with I(zone)), C(zones/ZONE/instances/NAME), or a partial or full URL (its
            C(selfLink)). Defaults to I(node).
        type: str
      zone:
        description: The VM's zone (a name or URL); needed when I(instance) is a bare name.
        type: str
      dest_ranges:
        description: The node's pod CIDRs, IPv4 and/or IPv6, without host bits.
        type: list
        elements: str
        default: []
  route_prefix:
    description:
      - Start of every route name (C(podnet_gce_route_prefix)); 1-30 characters, a lower-case letter first, then
        lower-case letters, digits and dashes, no dash at the end.
        Give every cluster in a project its own prefix.
    type: str
    default: podnet
  description:
    description:
      - The ownership marker written as every route's description; routes with another description are never
        touched. Defaults to C(podnet.cluster pod route (PREFIX)).
    type: str
  priority:
    description: The routes' priority (C(podnet_gce_route_priority)), 0-65535, lower wins.
    type: int
    default: 1000
  auth_kind:
    description:
      - How to authenticate. C(application) - Application Default Credentials; C(serviceaccount) - the key file
        I(service_account_file); C(machineaccount) - the metadata server of the GCE VM the controller runs on;
        C(accesstoken) - the OAuth2 bearer token I(access_token).
    type: str
    choices: [application, serviceaccount, machineaccount, accesstoken]
    default: application
  service_account_file:
    description: Service account JSON key file, for I(auth_kind=serviceaccount).
    type: path
  access_token:
    description: OAuth2 access token, for I(auth_kind=accesstoken).
    type: str
  scopes:
    description: OAuth2 scopes requested for application, serviceaccount and machineaccount credentials.
    type: list
    elements: str
    default: ["https://www.googleapis.com/auth/compute"]
  api_endpoint:
    description:
      - Base URL of the Compute Engine v1 API, ending in C(/compute/v1/). Set it for a private endpoint (Private
        Service Connect) or for tests.
    type: str
    default: https://compute.googleapis.com/compute/v1/
  concurrency:
    description: How many inserts, deletes or instance reads run at the same time (1-64).
    type: int
    default: 8
  retry_deadline:
    description: Seconds within which one API call is retried on 429, 5xx, rate limits and connection errors.
    type: float
    default: 120
  operation_timeout:
    description: Seconds to wait for one global operation to reach DONE.
    type: float
    default: 300
  operation_poll:
    description: C(wait) uses C(globalOperations.wait) (the server holds the call until DONE or a deadline); C(get) polls C(globalOperations.get).
    type: str
    choices: [wait, get]
    default: wait
  page_size:
    description: C(maxResults) of each C(routes.list) page (1-500); the module follows C(nextPageToken) to the last page.
    type: int
    default: 500
  request_timeout:
    description:
      - Seconds one HTTP request may take. A C(globalOperations.wait) call may take 120 seconds more (the API holds
        it until the operation is done or its two-minute deadline), so a slow wait is never cut and retried.
      - Every worker thread has its own HTTP session (a C(requests.Session) is not shared between threads).
    type: float
    default: 60
  state:
    description:
      - C(present) makes the owned routes exactly I(routes); C(absent) deletes every owned route (teardown) and
        nothing else.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Only reads (routes.list and instances.get); the result says what would be inserted and deleted.
  diff_mode:
    support: full
    description: The owned routes before and after, one line per route.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller (delegate_to localhost); needs network access to the API endpoint.
notes:
  - Use with C(run_once=true) and C(delegate_to=localhost); the implicit localhost runs the module with the
    controller's Python, which must have google-auth and requests.
  - The default I(description) includes I(route_prefix), so two clusters with different prefixes never own each
    other's routes even in one network.
seealso:
  - name: Compute Engine routes API
    description: The REST resource the module manages.
    link: https://cloud.google.com/compute/docs/reference/rest/v1/routes
  - name: Static routes
    description: Next hops and the IPv6 support of each next-hop type.
    link: https://cloud.google.com/vpc/docs/static-routes
"""

EXAMPLES = r"""
- name: One Compute Engine route per node pod subnet
  podnet.cluster.gce_routes:
    project: my-project
    network: k8s-net
    route_prefix: prod
    routes:
      - {node: node-a, instance: node-a, zone: europe-west1-b, dest_ranges: [10.244.0.0/24, "fd00:10:244::/64"]}
      - {node: node-b, instance: node-b, zone: europe-west1-c, dest_ranges: [10.244.1.0/24, "fd00:10:244:1::/64"]}
  run_once: true
  delegate_to: localhost

- name: Remove every route the collection owns (teardown)
  podnet.cluster.gce_routes:
    project: my-project
    network: k8s-net
    route_prefix: prod
    state: absent
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
inserted:
  description: Routes inserted (in check mode, that would be inserted); C(replaces) names the owned routes to the same destination deleted after it.
  returned: always
  type: list
  elements: dict
  sample: [{name: podnet-10-244-1-0-24, dest_range: 10.244.1.0/24, node: node-b, instance: europe-west1-c/node-b, priority: 1000, replaces: []}]
deleted:
  description: Owned routes deleted (or that would be); C(reason) is C(stale) (destination no longer wanted),
    C(replaced) (new next hop), C(duplicate), C(blocking) or C(absent).
  returned: always
  type: list
  elements: dict
  sample: [{name: podnet-10-244-9-0-24, dest_range: 10.244.9.0/24, node: null, instance: europe-west1-b/old-node, reason: stale}]
adopted:
  description: Names whose insert answered 409 and whose existing route was identical to the wanted one (success without change).
  returned: always
  type: list
  elements: str
routes:
  description: The owned routes after the run (as predicted in check mode).
  returned: always
  type: list
  elements: str
  sample: ["podnet-10-244-1-0-24 10.244.1.0/24 via europe-west1-c/node-b priority 1000  (node-b)"]
wanted:
  description: How many routes the cluster wants.
  returned: always
  type: int
api_requests:
  description: HTTP requests made, and how many of them were retries.
  returned: always
  type: dict
  sample: {requests: 12, retries: 0}
diff:
  description: The owned routes before and after, one line per route (with C(--diff)).
  returned: when diff mode is on
  type: dict
"""

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible_collections.podnet.cluster.plugins.module_utils.gce import (
    diff_text,
    instance_problems,
    instances_message,
    parse_route,
    parse_wanted,
    plan_routes,
)
from ansible_collections.podnet.cluster.plugins.module_utils.gce_names import (
    COMPUTE_SCOPE,
    DEFAULT_ENDPOINT,
    DEFAULT_PREFIX,
    GceInputError,
    default_description,
    limit,
    list_filter,
    network_path,
    prefix_problem,
    short_instance,
)
from ansible_collections.podnet.cluster.plugins.module_utils.gce_apply import Runner, delete_item, insert_item
from ansible_collections.podnet.cluster.plugins.module_utils.gce_client import (
    IMPORT_ERROR,
    ApiError,
    AuthError,
    ComputeClient,
    build_session,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project=dict(type="str", required=True),
            network=dict(type="str", required=True),
            routes=dict(type="list", elements="dict", default=[], options=dict(
                node=dict(type="str", required=True),
                instance=dict(type="str"),
                zone=dict(type="str"),
                dest_ranges=dict(type="list", elements="str", default=[]),
            )),
            route_prefix=dict(type="str", default=DEFAULT_PREFIX),
            description=dict(type="str"),
            priority=dict(type="int", default=1000),
            auth_kind=dict(type="str", default="application",
                           choices=["application", "serviceaccount", "machineaccount", "accesstoken"]),
            service_account_file=dict(type="path", fallback=(env_fallback, ["GCP_SERVICE_ACCOUNT_FILE"])),
            access_token=dict(type="str", no_log=True, fallback=(env_fallback, ["GCP_ACCESS_TOKEN"])),
            scopes=dict(type="list", elements="str", default=[COMPUTE_SCOPE]),
            api_endpoint=dict(type="str", default=DEFAULT_ENDPOINT),
            concurrency=dict(type="int", default=8),
            retry_deadline=dict(type="float", default=120.0),
            operation_timeout=dict(type="float", default=300.0),
            operation_poll=dict(type="str", default="wait", choices=["wait", "get"]),
            page_size=dict(type="int", default=500),
            request_timeout=dict(type="float", default=60.0),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("auth_kind", "accesstoken", ["access_token"]),
                     ("auth_kind", "serviceaccount", ["service_account_file"])],
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("google-auth and requests"), exception=IMPORT_ERROR)
    p = module.params
    project = p["project"].strip()
    prefix = p["route_prefix"].strip()
    state = p["state"]

    # ---- inputs, every problem at once, before any API call
    problems = []
    bad_prefix = prefix_problem(prefix)
    if bad_prefix:
        problems.append(bad_prefix)
    if not 0 <= p["priority"] <= 65535:
        problems.append("priority %d is outside 0..65535" % p["priority"])
    if not 1 <= p["concurrency"] <= 64:
        problems.append("concurrency %d is outside 1..64" % p["concurrency"])
    if not 1 <= p["page_size"] <= 500:
        problems.append("page_size %d is outside 1..500" % p["page_size"])
    for opt in ("retry_deadline", "operation_timeout", "request_timeout"):
        if p[opt] <= 0:
            problems.append("%s must be positive, not %g" % (opt, p[opt]))
    if not p["api_endpoint"].startswith(("https://", "http://")):
        problems.append("api_endpoint %r is not an http(s) URL" % p["api_endpoint"])
    try:
        network = network_path(p["network"], project)
    except ValueError as exc:
        problems.append("network: %s" % exc)
        network = None
    marker = p["description"] if p["description"] is not None else default_description(prefix)
    if not marker.strip():
        problems.append("description (the ownership marker) must not be empty")
    wanted = {}
    if state == "present" and not bad_prefix:
        try:
            wanted = parse_wanted(p["routes"], project, prefix, p["priority"])
        except GceInputError as exc:
            problems.extend(exc.problems)
    if problems:
        module.fail_json(msg="gce_routes: invalid input: %s" % limit(problems), problems=problems)

    # ---- read
    try:
        session = build_session(p["auth_kind"], p["service_account_file"], p["access_token"], p["scopes"])
    except AuthError as exc:
        module.fail_json(msg="gce_routes: %s" % exc)
    client = ComputeClient(session, p["api_endpoint"], project, retry_deadline=p["retry_deadline"],
                           request_timeout=p["request_timeout"])

    def stats():
        return dict(requests=client.requests, retries=client.retries)

    try:
        listed = client.list_routes(list_filter(prefix), max_results=p["page_size"])
    except ApiError as exc:
        module.fail_json(msg="gce_routes: listing the routes of project %s failed: %s" % (project, exc),
                         api_requests=stats())
    existing = [parse_route(r, project) for r in listed]

    instance_issues = []
    if wanted:
        by_node = {}
        for want in wanted.values():
            entry = by_node.setdefault(want.node, [want.instance, set()])
            entry[1].add(want.dest.version)

        def check(item):
            node, (path, families) = item
            try:
                found = client.get_instance(path)
            except ApiError as exc:
                return ["node %s: reading instance %s failed: %s" % (node, short_instance(path), exc)]
            return instance_problems(node, path, found, network, families)

        with ThreadPoolExecutor(max_workers=p["concurrency"]) as pool:
            for found in pool.map(check, sorted(by_node.items())):
                instance_issues.extend(found)

    plan = plan_routes(existing, wanted, prefix, marker, network, state)
    if plan.conflicts:
        module.fail_json(
            msg="gce_routes: %d route name(s) the collection needs are held by routes it does not own in project %s "
                "(ownership = prefix %s + description %r + network %s); nothing was changed: %s"
                % (len(plan.conflicts), project, prefix, marker, network, limit(plan.conflicts, sep=" | ")),
            conflicts=plan.conflicts, api_requests=stats())
    if instance_issues:
        module.fail_json(msg="gce_routes: " + instances_message(instance_issues, network),
                         instance_problems=instance_issues, api_requests=stats())

    result = dict(
        changed=plan.changed,
        inserted=[insert_item(i) for i in plan.inserts],
        deleted=[delete_item(d) for d in plan.pre_deletes + plan.deletes],
        adopted=[],
        routes=plan.after_lines(),
        wanted=len(wanted),
        project=project,
        network=network,
        route_prefix=prefix,
    )
    if module._diff:
        result["diff"] = dict(before=diff_text(plan.before_lines()), after=diff_text(plan.after_lines()),
                              before_header="gce routes %s %s-*" % (network, prefix),
                              after_header="gce routes %s %s-*" % (network, prefix))

    # ---- write: every call behind this one gate
    if plan.changed and not module.check_mode:
        runner = Runner(client, p, network, marker, plan, len(wanted))
        runner.run()
        done_inserts = {id(i) for i in runner.inserted}
        done_deletes = {id(d) for d in runner.deleted}
        result["inserted"] = [insert_item(i) for i in plan.inserts if id(i) in done_inserts]
        result["deleted"] = [delete_item(d) for d in plan.pre_deletes + plan.deletes if id(d) in done_deletes]
        result["adopted"] = sorted(runner.adopted)
        result["changed"] = bool(runner.inserted or runner.deleted)
        if runner.failures:
            pending = len(plan.deletes) + len(plan.pre_deletes) - len(runner.deleted)
            result["api_requests"] = stats()
            module.fail_json(
                msg="gce_routes: %s%s" % (limit(runner.failures, sep=" | "),
                                          "" if runner.quota or not pending else
                                          " (%d planned deletion(s) not done: deletes run only after every insert "
                                          "succeeded)" % pending),
                failures=runner.failures, quota_exceeded=runner.quota, **result)
    result["api_requests"] = stats()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
