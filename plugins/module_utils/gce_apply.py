# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Carrying out a plan of Compute Engine routes (podnet.cluster.gce_routes): inserts, then (only if all succeeded)
deletes, several at a time, with the quota and conflict handling of each write; and the result items of a
route. The plan itself is module_utils.gce's, the API client module_utils.gce_client's."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from typing import Optional

from ansible_collections.podnet.cluster.plugins.module_utils.gce import (
    ExistingRoute,
    Insert,
    describe_foreign,
    parse_route,
    route_matches,
)
from ansible_collections.podnet.cluster.plugins.module_utils.gce_names import short_instance
from ansible_collections.podnet.cluster.plugins.module_utils.gce_client import (
    ApiError,
    OperationTimeout,
    is_quota,
    operation_error_text,
    operation_is_quota,
)


def quota_message(item: Insert, api_message: str, wanted_total: int, in_place: int, inserted: int,
                  project: str, network: str) -> str:
    return ("Compute Engine quota refused route %s (%s for node %s): %s. This cluster wants %d route(s) in %s "
            "(%d already in place, %d inserted by this run before the refusal); raise the ROUTES quota of project "
            "%s or remove routes. Nothing was deleted." % (item.name, item.want.dest, item.want.node, api_message,
                                                           wanted_total, network, in_place, inserted, project))


def conflict_409_message(item: Insert, found: Optional[ExistingRoute], api_message: str) -> str:
    what = describe_foreign(found) if found is not None else "(it could not be read back)"
    return ("route %s for node %s (%s via %s) already exists and differs from the wanted route: %s. The API said: %s. "
            "The collection does not touch routes it does not own; remove it or choose another route prefix."
            % (item.name, item.want.node, item.want.dest, short_instance(item.want.instance), what, api_message))


class Failure(Exception):
    """A write that failed; ``quota`` marks a quota refusal (stop inserting, delete nothing)."""

    def __init__(self, msg, quota=False):
        super().__init__(msg)
        self.quota = quota


class Runner:
    """Carries out a plan: inserts, then (only if all succeeded) deletes, ``concurrency`` at a time."""

    def __init__(self, client, params, network, marker, plan, wanted_total):
        self.client = client
        self.p = params
        self.network = network
        self.marker = marker
        self.plan = plan
        self.wanted_total = wanted_total
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.inserted = []
        self.adopted = []
        self.deleted = []
        self.failures = []
        self.quota = False

    def _wait(self, op):
        return self.client.wait(op, self.p["operation_timeout"], self.p["operation_poll"])

    def _fail(self, msg, quota=False):
        with self.lock:
            self.failures.append(msg)
            if quota:
                self.quota = True
            self.stop.set()

    def insert(self, item):
        if self.stop.is_set():
            return
        want = item.want
        body = want.body(item.name, self.network, self.marker)
        try:
            try:
                op = self.client.insert_route(body)
            except ApiError as exc:
                if exc.status == 409:
                    found = self.client.get_route(item.name)
                    pending = found is None
                    if pending:
                        # 409 and yet no route: an insert of that name is still in flight - typically this very
                        # insert, retried after its first attempt was accepted but its answer lost. Wait for it.
                        found = self._await_route(item.name)
                        if found is None:
                            raise Failure("inserting route %s (%s via %s) for node %s: the API answered 409 (it "
                                          "exists) but the route did not appear within %gs: an insert of that name is "
                                          "still in flight; nothing was deleted, run again"
                                          % (item.name, want.dest, short_instance(want.instance), want.node,
                                             self.p["operation_timeout"]))
                    route = parse_route(found, self.p["project"]) if found else None
                    if route is not None and route_matches(route, want, self.network, self.marker) \
                            and route.name == item.name:
                        with self.lock:
                            if pending:
                                self.inserted.append(item)   # it came into being during this run
                            else:
                                self.adopted.append(item.name)
                        return
                    raise Failure(conflict_409_message(item, route, exc.message))
                if is_quota(exc.info):
                    raise Failure(self._quota_text(item, exc.message), quota=True)
                raise Failure("inserting route %s (%s via %s) for node %s failed: %s"
                              % (item.name, want.dest, short_instance(want.instance), want.node, exc))
            done = self._wait(op)
            if done.get("error"):
                text = operation_error_text(done)
                if operation_is_quota(done):
                    raise Failure(self._quota_text(item, text), quota=True)
                raise Failure("operation %s inserting route %s (%s via %s) for node %s ended with an error: %s"
                              % (done.get("name", "?"), item.name, want.dest, short_instance(want.instance),
                                 want.node, text))
            with self.lock:
                self.inserted.append(item)
        except Failure as exc:
            self._fail(str(exc), exc.quota)
        except (ApiError, OperationTimeout) as exc:
            self._fail("inserting route %s (%s) for node %s failed: %s" % (item.name, want.dest, want.node, exc))
        except Exception as exc:  # a worker thread must not lose an error: report it like the others
            self._fail("inserting route %s (%s) for node %s failed unexpectedly: %r" % (item.name, want.dest,
                                                                                        want.node, exc))

    def _await_route(self, name):
        """The route ``name`` once an insert in flight made it, or None after operation_timeout seconds."""
        client = self.client
        deadline = client.clock() + self.p["operation_timeout"]
        pause = 0.25
        while not self.stop.is_set():
            found = client.get_route(name)
            if found is not None or client.clock() + pause > deadline:
                return found
            client.sleep(pause)
            pause = min(pause * 2, 5.0)
        return None

    def _quota_text(self, item, api_message):
        in_place = len(self.plan.keep)
        with self.lock:
            inserted = len(self.inserted)
        return quota_message(item, api_message, self.wanted_total, in_place, inserted, self.p["project"],
                             self.network)

    def delete(self, item):
        route = item.route
        who = "node %s" % item.node if item.node else "no node (%s)" % item.reason
        try:
            op = self.client.delete_route(route.name)
            if op is not None:
                done = self._wait(op)
                if done.get("error"):
                    raise Failure("operation %s deleting route %s (%s, %s) ended with an error: %s"
                                  % (done.get("name", "?"), route.name, route.dest, who, operation_error_text(done)))
            with self.lock:
                self.deleted.append(item)
        except Failure as exc:
            self._fail(str(exc))
        except (ApiError, OperationTimeout) as exc:
            self._fail("deleting route %s (%s, %s) failed: %s" % (route.name, route.dest, who, exc))
        except Exception as exc:  # see insert()
            self._fail("deleting route %s (%s, %s) failed unexpectedly: %r" % (route.name, route.dest, who, exc))

    def run(self):
        workers = self.p["concurrency"]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self.delete, self.plan.pre_deletes))
        if self.failures:
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self.insert, self.plan.inserts))
        if self.failures:
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self.delete, self.plan.deletes))


def insert_item(item):
    return dict(name=item.name, dest_range=str(item.want.dest), node=item.want.node,
                instance=short_instance(item.want.instance), priority=item.want.priority,
                replaces=[r.name for r in item.replaces])


def delete_item(item):
    route = item.route
    return dict(name=route.name, dest_range=str(route.dest), node=item.node,
                instance=short_instance(route.instance), reason=item.reason)
