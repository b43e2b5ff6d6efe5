# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""A local HTTP stand-in of the Compute Engine v1 REST API, the part podnet.cluster.gce_routes uses.

No Compute routes emulator exists, so this follows the documented REST API:

* ``GET    /compute/v1/projects/P/global/routes`` - ``filter`` (``field eq|ne "RE2"`` and ``field =|!= literal``
  expressions, several of them each in parentheses, all must hold), ``maxResults`` (0-500, default 500),
  ``pageToken``/``nextPageToken``; items sorted by name;
* ``GET|DELETE /compute/v1/projects/P/global/routes/NAME``, ``POST /compute/v1/projects/P/global/routes``;
* ``GET /compute/v1/projects/P/global/operations/OP`` and ``POST .../operations/OP/wait``: an operation is
  PENDING when created and each poll (get or wait) moves it on: RUNNING, RUNNING again ``operation_polls - 1``
  more times, then DONE. The route appears (insert) or disappears (delete) when its operation is DONE;
* ``GET /compute/v1/projects/P/zones/Z/instances/NAME`` with ``canIpForward`` and ``networkInterfaces``
  (``network``, ``networkIP``, ``stackType``, ``ipv6Address``);
* every API request needs ``Authorization: Bearer <token>`` (401 without);
* errors in Google's JSON error shape (``{"error": {"code", "message", "errors": [{"reason", ...}]}}``);
* responses carry full URLs under ``https://www.googleapis.com/compute/v1/``, as the real API does.

Faults to inject (attributes of ``GceStandIn.faults``): ``fail_next`` requests answered ``fail_status`` (503),
``quota_limit`` (403 quotaExceeded on an insert once that many routes exist or are being inserted),
``conflict_on_insert`` (a route created by "someone else" just before an insert of that name, which then gets
409), ``operation_polls`` and ``wait_delay`` (slow operations), ``operation_errors`` (the operation of that
route ends DONE with an error), ``lose_insert_response`` (an insert accepted whose answer is lost: 503, the
operation completes by itself a moment later).

``hook(event)`` is called whenever an insert or delete operation completes (RouteEvent: the route, its
destination, the next-hop VM's address, and the routes left for that destination, best first); the lab uses
``NetnsRouteSync`` to program the lab router namespace from it. ``serve``/``stop`` below run it as a process.
"""

from __future__ import annotations

import argparse
import base64
import copy
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

API = "/compute/v1/"
SELF_BASE = "https://www.googleapis.com/compute/v1/"
NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
ROUTE_PROTO = 158


@dataclass
class Faults:
    fail_next: int = 0
    fail_status: int = 503
    retry_after: Optional[str] = None
    quota_limit: Optional[int] = None
    conflict_on_insert: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    operation_polls: int = 1
    wait_delay: float = 0.0
    operation_errors: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    # route name -> seconds: its insert is accepted (the operation runs, and completes by itself after that many
    # seconds, as the real API's do without anyone polling), but the answer is lost (503 to the client)
    lose_insert_response: Dict[str, float] = field(default_factory=dict)


@dataclass
class Logged:
    seq: int
    method: str
    path: str
    params: Dict[str, str]
    body: Any
    status: int


@dataclass
class RouteEvent:
    operation: str                     # insert | delete
    route: Dict[str, Any]
    dest_range: str
    network: str                       # full URL
    next_hop_ip: Optional[str]
    remaining: List[Tuple[int, str, Optional[str]]]   # (priority, name, next-hop address), best first


class ApiFault(Exception):
    def __init__(self, status: int, reason: str, message: str, domain: str = "global"):
        super().__init__(message)
        self.status, self.reason, self.message, self.domain = status, reason, message, domain

    def body(self) -> Dict[str, Any]:
        return {"error": {"code": self.status, "message": self.message,
                          "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}]}}


def _full(path: str) -> str:
    return SELF_BASE + path


def _path_of(url: str) -> str:
    """Full or partial URL -> 'projects/...' path (as given when already a path)."""
    text = url.strip()
    idx = text.find("projects/")
    return text[idx:] if idx >= 0 else text


class GceStandIn:
    """The API state and the HTTP server; use as a context manager or start()/stop()."""

    def __init__(self, project: str = "podnet-lab", token: str = "podnet-test-token",
                 hook: Optional[Callable[[RouteEvent], None]] = None, host: str = "127.0.0.1", port: int = 0):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the stand-in listens on loopback only")
        self.project = project
        self.projects = {project}
        self.token = token
        self.hook = hook
        self.faults = Faults()
        self.lock = threading.RLock()
        self.routes: Dict[str, Dict[str, Any]] = {}
        self.instances: Dict[str, Dict[str, Any]] = {}       # path -> instance
        self.operations: Dict[str, Dict[str, Any]] = {}
        self._op_state: Dict[str, Dict[str, Any]] = {}
        self._pending_names: Dict[str, str] = {}             # route name -> insert operation
        self.log: List[Logged] = []
        self.events: List[Tuple[int, str, str, Optional[str]]] = []   # (seq, operation, route, error code)
        self.hook_errors: List[str] = []
        self._seq = 0
        self._ids = 1000
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    # ----------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return "http://%s:%d%s" % (host, port, API)

    def start(self) -> "GceStandIn":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="gce-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "GceStandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --------------------------------------------------------------------------------- test set-up
    def add_instance(self, name: str, zone: str = "lab-a", network: str = "default", network_ip: str = "10.0.0.2",
                     ipv6_address: Optional[str] = None, can_ip_forward: bool = True,
                     stack_type: Optional[str] = None, project: Optional[str] = None) -> Dict[str, Any]:
        project = project or self.project
        self.projects.add(project)
        net_path = _path_of(network) if "/" in network else "projects/%s/global/networks/%s" % (project, network)
        path = "projects/%s/zones/%s/instances/%s" % (project, zone, name)
        nic: Dict[str, Any] = {"kind": "compute#networkInterface", "name": "nic0", "network": _full(net_path),
                               "networkIP": network_ip,
                               "stackType": stack_type or ("IPV4_IPV6" if ipv6_address else "IPV4_ONLY")}
        if ipv6_address:
            nic["ipv6Address"] = ipv6_address
        with self.lock:
            self._ids += 1
            inst = {"kind": "compute#instance", "id": str(self._ids), "name": name, "status": "RUNNING",
                    "zone": _full("projects/%s/zones/%s" % (project, zone)), "canIpForward": can_ip_forward,
                    "networkInterfaces": [nic], "selfLink": _full(path)}
            self.instances[path] = inst
        return inst

    def add_route(self, name: str, dest_range: str, network: str = "default", instance: Optional[str] = None,
                  zone: str = "lab-a", priority: int = 1000, description: str = "", **extra: Any) -> Dict[str, Any]:
        """Put a route in place directly (no operation, no hook): routes of others, or of an earlier run."""
        body = dict(extra, name=name, destRange=dest_range, priority=priority, description=description,
                    network=network if "/" in network else "projects/%s/global/networks/%s" % (self.project, network))
        if instance:
            body["nextHopInstance"] = instance if "/" in instance else "zones/%s/instances/%s" % (zone, instance)
        with self.lock:
            route = self._make_route(body)
            self.routes[name] = route
        return route

    def route_table(self) -> Dict[str, Dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.routes)

    def requests(self, method: Optional[str] = None, contains: str = "") -> List[Logged]:
        with self.lock:
            return [r for r in self.log if (method is None or r.method == method) and contains in r.path]

    def writes(self) -> List[Tuple[str, str]]:
        """(method, route name) of every accepted insert (POST) and delete request, in order."""
        out = []
        for r in self.requests():
            if r.status >= 300:
                continue
            if r.method == "POST" and r.path.endswith("/global/routes"):
                out.append(("insert", (r.body or {}).get("name", "?")))
            elif r.method == "DELETE" and "/global/routes/" in r.path:
                out.append(("delete", r.path.rsplit("/", 1)[-1]))
        return out

    # ------------------------------------------------------------------------------------ HTTP glue
    def _handler_class(self) -> type:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload, headers = standin.handle(method, self.path, dict(self.headers.items()), raw)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler

    def handle(self, method: str, raw_path: str, headers: Dict[str, str], raw: bytes
               ) -> Tuple[int, Any, Dict[str, str]]:
        split = urlsplit(raw_path)
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = split.path
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self.lock:
            self._seq += 1
            entry = Logged(self._seq, method, path, params, body, 0)
            self.log.append(entry)
        after: List[Callable[[], None]] = []
        extra: Dict[str, str] = {}
        try:
            if path.startswith("/_standin/"):
                status, payload = 200, self._debug(path)
            else:
                self._authorize(headers)
                with self.lock:
                    if self.faults.fail_next > 0:
                        self.faults.fail_next -= 1
                        if self.faults.retry_after is not None:
                            extra["Retry-After"] = self.faults.retry_after
                        raise ApiFault(self.faults.fail_status, "backendError", "Backend Error (injected)")
                status, payload = self._route(method, path, params, body, after)
        except ApiFault as fault:
            status, payload = fault.status, fault.body()
        entry.status = status
        for call in after:
            call()
        return status, payload, extra

    def _authorize(self, headers: Dict[str, str]) -> None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if value != "Bearer %s" % self.token:
            raise ApiFault(401, "required" if not value else "authError",
                           "Request is missing required authentication credential." if not value else
                           "Request had invalid authentication credentials.", domain="global")

    def _debug(self, path: str) -> Any:
        with self.lock:
            if path == "/_standin/routes":
                return copy.deepcopy(self.routes)
            if path == "/_standin/requests":
                return [r.__dict__ for r in self.log]
        raise ApiFault(404, "notFound", "no such debug path")

    # -------------------------------------------------------------------------------------- router
    def _route(self, method: str, path: str, params: Dict[str, str], body: Any,
               after: List[Callable[[], None]]) -> Tuple[int, Any]:
        if not path.startswith(API):
            raise ApiFault(404, "notFound", "The requested URL %s was not found on this server." % path)
        parts = path[len(API):].strip("/").split("/")
        if len(parts) < 2 or parts[0] != "projects":
            raise ApiFault(404, "notFound", "The requested URL %s was not found on this server." % path)
        project = parts[1]
        if project not in self.projects:
            raise ApiFault(404, "notFound", "The resource 'projects/%s' was not found" % project)
        rest = parts[2:]
        with self.lock:
            if rest == ["global", "routes"] and method == "GET":
                return 200, self._list_routes(project, params)
            if rest == ["global", "routes"] and method == "POST":
                return 200, self._insert_route(project, body)
            if len(rest) == 3 and rest[:2] == ["global", "routes"]:
                if method == "GET":
                    return 200, copy.deepcopy(self._get_route(project, rest[2]))
                if method == "DELETE":
                    return 200, self._delete_route(project, rest[2])
            if len(rest) in (3, 4) and rest[:2] == ["global", "operations"]:
                if (len(rest) == 3 and method == "GET") or (len(rest) == 4 and rest[3] == "wait" and method == "POST"):
                    return 200, self._poll(project, rest[2], wait=len(rest) == 4, after=after)
            if len(rest) == 4 and rest[0] == "zones" and rest[2] == "instances" and method == "GET":
                inst = self.instances.get("projects/%s/zones/%s/instances/%s" % (project, rest[1], rest[3]))
                if inst is None:
                    raise ApiFault(404, "notFound", "The resource 'projects/%s/zones/%s/instances/%s' was not found"
                                   % (project, rest[1], rest[3]))
                return 200, copy.deepcopy(inst)
        raise ApiFault(404, "notFound", "The requested URL %s was not found on this server." % path)

    # ---------------------------------------------------------------------------------------- routes
    def _make_route(self, body: Dict[str, Any]) -> Dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ApiFault(400, "invalid", "Invalid value for field 'resource.name': '%s'. Must be a match of regex "
                           "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'" % name)
        try:
            dest = ipaddress.ip_network(str(body.get("destRange")), strict=True)
        except ValueError:
            raise ApiFault(400, "invalid", "Invalid value for field 'resource.destRange': '%s'. The destination "
                           "range must be a valid IPv4 or IPv6 CIDR range." % body.get("destRange"))
        network = body.get("network")
        if not network:
            raise ApiFault(400, "required", "Required field 'resource.network' not specified")
        try:
            priority = int(body.get("priority", 1000))
        except (TypeError, ValueError):
            priority = -1
        if not 0 <= priority <= 65535:
            raise ApiFault(400, "invalid", "Invalid value for field 'resource.priority': '%s'." % body.get("priority"))
        hops = [k for k in ("nextHopInstance", "nextHopIp", "nextHopGateway", "nextHopIlb", "nextHopVpnTunnel")
                if body.get(k)]
        if len(hops) != 1:
            raise ApiFault(400, "invalid", "Exactly one next hop must be specified.")
        self._ids += 1
        route: Dict[str, Any] = {
            "kind": "compute#route", "id": str(self._ids), "creationTimestamp": _now(), "name": name,
            "description": body.get("description", ""), "destRange": str(dest), "priority": priority,
            "network": _full(self._project_path(network, "global/networks")), "routeType": "STATIC",
            "selfLink": _full("projects/%s/global/routes/%s" % (self.project, name)),
        }
        for key in hops:
            value = body[key]
            route[key] = _full(self._project_path(value, "zones")) if key == "nextHopInstance" else value
        if body.get("tags"):
            route["tags"] = list(body["tags"])
        return route

    def _project_path(self, value: str, kind: str) -> str:
        path = _path_of(value)
        if path.startswith("projects/"):
            return path
        if kind == "global/networks" and "/" not in path:
            return "projects/%s/global/networks/%s" % (self.project, path)
        return "projects/%s/%s" % (self.project, path)

    def _list_routes(self, project: str, params: Dict[str, str]) -> Dict[str, Any]:
        try:
            max_results = int(params.get("maxResults", "500"))
        except ValueError:
            max_results = -1
        if not 0 <= max_results <= 500:
            raise ApiFault(400, "invalid", "Invalid value for field 'maxResults': '%s'. Must be in the range [0, 500]."
                           % params.get("maxResults"))
        max_results = max_results or 500
        flt = params.get("filter", "")
        match = compile_filter(flt)
        items = [copy.deepcopy(r) for _unused, r in sorted(self.routes.items()) if match(r)]
        offset = 0
        if params.get("pageToken"):
            try:
                token = json.loads(base64.urlsafe_b64decode(params["pageToken"].encode()))
                offset = int(token["o"])
                if token.get("f") != flt:
                    raise ValueError("filter changed")
            except (ValueError, KeyError, TypeError):
                raise ApiFault(400, "invalid", "Invalid value for field 'pageToken': '%s'." % params["pageToken"])
        page = items[offset:offset + max_results]
        out: Dict[str, Any] = {"kind": "compute#routeList", "id": "projects/%s/global/routes" % project,
                               "items": page, "selfLink": _full("projects/%s/global/routes" % project)}
        if offset + max_results < len(items):
            out["nextPageToken"] = base64.urlsafe_b64encode(
                json.dumps({"o": offset + max_results, "f": flt}).encode()).decode()
        return out

    def _get_route(self, project: str, name: str) -> Dict[str, Any]:
        route = self.routes.get(name)
        if route is None:
            raise ApiFault(404, "notFound", "The resource 'projects/%s/global/routes/%s' was not found" % (project, name))
        return route

    def _insert_route(self, project: str, body: Any) -> Dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiFault(400, "parseError", "Parse Error")
        name = body.get("name")
        if name in self.faults.conflict_on_insert:
            spec = self.faults.conflict_on_insert.pop(name)
            self.routes[name] = self._make_route(dict(body, **spec))
        if name in self.routes or name in self._pending_names:
            raise ApiFault(409, "alreadyExists", "The resource 'projects/%s/global/routes/%s' already exists"
                           % (project, name))
        route = self._make_route(body)
        limit = self.faults.quota_limit
        if limit is not None and len(self.routes) + len(self._pending_names) >= limit:
            raise ApiFault(403, "quotaExceeded", "Quota 'ROUTES' exceeded.  Limit: %d.0 globally." % limit,
                           domain="usageLimits")
        op = self._new_operation(project, "insert", route)
        self._pending_names[name] = op["name"]
        if name in self.faults.lose_insert_response:
            self._finish_later(op["name"], self.faults.lose_insert_response.pop(name))
            raise ApiFault(503, "backendError", "The service is currently unavailable (the insert was accepted; "
                                                "its answer is lost)")
        return copy.deepcopy(op)

    def _finish_later(self, op_name: str, delay: float) -> None:
        """Complete an operation after ``delay`` seconds whether or not anyone polls it."""
        def finish() -> None:
            after: List[Callable[[], None]] = []
            with self.lock:
                op, state = self.operations[op_name], self._op_state[op_name]
                if op["status"] != "DONE":
                    self._complete(op, state, after)
            for call in after:
                call()
        timer = threading.Timer(delay, finish)
        timer.daemon = True
        timer.start()

    def _delete_route(self, project: str, name: str) -> Dict[str, Any]:
        route = self._get_route(project, name)
        return copy.deepcopy(self._new_operation(project, "delete", route))

    # ------------------------------------------------------------------------------------ operations
    def _new_operation(self, project: str, kind: str, route: Dict[str, Any]) -> Dict[str, Any]:
        self._ids += 1
        name = "operation-%d-%s" % (int(time.time() * 1000), format(self._ids, "x"))
        op = {"kind": "compute#operation", "id": str(self._ids), "name": name, "operationType": kind,
              "targetLink": route["selfLink"], "targetId": route["id"], "status": "PENDING", "progress": 0,
              "user": "podnet-test@%s.iam.gserviceaccount.com" % project, "insertTime": _now(),
              "selfLink": _full("projects/%s/global/operations/%s" % (project, name))}
        self.operations[name] = op
        self._op_state[name] = {"route": route, "polls": max(1, self.faults.operation_polls),
                                "error": self.faults.operation_errors.get(route["name"])}
        return op

    def _poll(self, project: str, name: str, wait: bool, after: List[Callable[[], None]]) -> Dict[str, Any]:
        op = self.operations.get(name)
        if op is None:
            raise ApiFault(404, "notFound", "The resource 'projects/%s/global/operations/%s' was not found"
                           % (project, name))
        if wait and self.faults.wait_delay:
            self.lock.release()
            try:
                time.sleep(self.faults.wait_delay)
            finally:
                self.lock.acquire()
        state = self._op_state[name]
        if op["status"] == "PENDING":
            op.update(status="RUNNING", startTime=_now())
        elif op["status"] == "RUNNING":
            state["polls"] -= 1
            if state["polls"] <= 0:
                self._complete(op, state, after)
            else:
                op["progress"] = min(90, op["progress"] + 10)
        return copy.deepcopy(op)

    def _complete(self, op: Dict[str, Any], state: Dict[str, Any], after: List[Callable[[], None]]) -> None:
        route = state["route"]
        error = state["error"]
        if error is None and op["operationType"] == "insert" and route.get("nextHopInstance"):
            if _path_of(route["nextHopInstance"]) not in self.instances:
                error = ("RESOURCE_NOT_FOUND", "The resource '%s' was not found" % _path_of(route["nextHopInstance"]))
        op.update(status="DONE", progress=100, endTime=_now())
        if op["operationType"] == "insert":
            self._pending_names.pop(route["name"], None)
        if error:
            op["error"] = {"errors": [{"code": error[0], "message": error[1]}]}
            op["httpErrorStatusCode"], op["httpErrorMessage"] = 400, "BAD REQUEST"
        elif op["operationType"] == "insert":
            self.routes[route["name"]] = route
        else:
            self.routes.pop(route["name"], None)
        self._seq += 1
        self.events.append((self._seq, op["operationType"], route["name"], error[0] if error else None))
        if not error and self.hook is not None:
            event = self._event(op["operationType"], route)
            after.append(lambda: self._call_hook(event))

    def _call_hook(self, event: RouteEvent) -> None:
        try:
            self.hook(event)  # type: ignore[misc]
        except Exception as exc:  # recorded for the test to see; the API answer is not affected
            self.hook_errors.append("%s %s: %s" % (event.operation, event.route.get("name"), exc))

    def _event(self, operation: str, route: Dict[str, Any]) -> RouteEvent:
        dest = route["destRange"]
        same = [r for r in self.routes.values() if r["destRange"] == dest and r["network"] == route["network"]]
        remaining = sorted((int(r.get("priority", 1000)), r["name"], self.next_hop_ip(r)) for r in same)
        return RouteEvent(operation, copy.deepcopy(route), dest, route["network"], self.next_hop_ip(route), remaining)

    def next_hop_ip(self, route: Dict[str, Any]) -> Optional[str]:
        """The address packets for ``route`` go to: its VM's interface in the route's network."""
        if route.get("nextHopIp"):
            return route["nextHopIp"]
        inst = self.instances.get(_path_of(route.get("nextHopInstance") or ""))
        if inst is None:
            return None
        v6 = ipaddress.ip_network(route["destRange"]).version == 6
        for nic in inst["networkInterfaces"]:
            if nic["network"] == route["network"]:
                return nic.get("ipv6Address") if v6 else nic.get("networkIP")
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


# ----------------------------------------------------------------------------------------- filters
_EXPR = re.compile(r"""\s*\(?\s*([A-Za-z][\w.]*)\s*(eq|ne|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()]+)\s*\)?\s*""")


def compile_filter(text: str) -> Callable[[Dict[str, Any]], bool]:
    """The documented list filter subset: ``eq``/``ne`` take an RE2 regular expression that must match the
    whole field; ``=``/``!=`` compare a literal; several expressions, each in parentheses, all must hold."""
    text = (text or "").strip()
    if not text:
        return lambda item: True
    tests = []
    pos = 0
    while pos < len(text):
        m = _EXPR.match(text, pos)
        if not m or m.end() == pos:
            raise ApiFault(400, "invalid", "Invalid value for field 'filter': '%s'. Invalid list filter expression."
                           % text)
        field_name, op, literal = m.groups()
        if literal[:1] in "\"'":
            literal = re.sub(r"\\(.)", r"\1", literal[1:-1]) if op in ("=", "!=") else literal[1:-1]
        tests.append((field_name, op, literal))
        pos = m.end()
    if len(tests) > 1 and text.count("(") < len(tests):
        raise ApiFault(400, "invalid", "Invalid value for field 'filter': '%s'. Put each expression in parentheses."
                       % text)

    def check(item: Dict[str, Any]) -> bool:
        for field_name, op, literal in tests:
            value = item
            for key in field_name.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            value_text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            if op in ("eq", "ne"):
                hit = re.fullmatch(literal, value_text) is not None
                if hit != (op == "eq"):
                    return False
            elif (value_text == literal) != (op == "="):
                return False
        return True

    return check


# --------------------------------------------------------------------------------- the lab's hook
class NetnsRouteSync:
    """A stand-in hook that mirrors each destination's best remaining route into one lab namespace.

    ``ip -n NS route replace DEST via NEXT_HOP proto 158`` while a route to DEST is left (the best by
    priority, then name), ``ip -n NS route del DEST proto 158`` when none is. Refuses a namespace that
    does not exist: it never runs in the machine's own namespace.
    """

    def __init__(self, netns: str, proto: int = ROUTE_PROTO, ip: str = "ip"):
        if not netns or "/" in netns or netns.startswith("-"):
            raise ValueError("a lab namespace name is required, not %r" % netns)
        listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=True).stdout
        if netns not in [line.split()[0] for line in listed.splitlines() if line.strip()]:
            raise ValueError("network namespace %r does not exist" % netns)
        self.netns, self.proto, self.ip = netns, proto, ip
        self.applied: List[List[str]] = []

    def __call__(self, event: RouteEvent) -> None:
        best = next((hop for _prio, _name, hop in event.remaining if hop), None)
        if best:
            argv = [self.ip, "-n", self.netns, "route", "replace", event.dest_range, "via", best,
                    "proto", str(self.proto)]
        else:
            argv = [self.ip, "-n", self.netns, "route", "del", event.dest_range, "proto", str(self.proto)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0 and not (not best and "No such process" in proc.stderr):
            raise RuntimeError("%s: %s" % (" ".join(argv), proc.stderr.strip()))
        self.applied.append(argv)


# ------------------------------------------------------------------------------- as a process
def lab_instances(inventory: str, zone: str, network: str) -> List[Dict[str, Any]]:
    """add_instance() arguments for every node of a lab inventory: the VM of each node, able to forward."""
    import yaml

    with open(inventory) as fh:
        data = yaml.safe_load(fh)
    nodes = data["all"]["children"]["podnet_lab"]["children"]["podnet_nodes"]["hosts"]
    out = []
    for name, hv in nodes.items():
        ips = hv["podnet_node_ip"] if isinstance(hv["podnet_node_ip"], list) else [hv["podnet_node_ip"]]
        addrs = [ipaddress.ip_interface(i).ip for i in ips]
        v4 = [str(a) for a in addrs if a.version == 4]
        v6 = [str(a) for a in addrs if a.version == 6]
        out.append({"name": name, "zone": zone, "network": network, "network_ip": v4[0],
                    "ipv6_address": v6[0] if v6 else None, "can_ip_forward": True})
    return out


def _serve(args: argparse.Namespace) -> int:
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    hook = NetnsRouteSync(args.netns) if args.netns else None
    standin = GceStandIn(project=args.project, token=args.token, hook=hook)
    if args.instances:
        with open(args.instances) as fh:
            for spec in json.load(fh):
                standin.add_instance(**spec)
    if args.lab_inventory:
        for spec in lab_instances(args.lab_inventory, args.zone, args.network):
            standin.add_instance(**spec)
    if args.background:
        read_fd, write_fd = os.pipe()
        if os.fork() > 0:
            os.close(write_fd)
            ready = os.read(read_fd, 1)
            return 0 if ready == b"1" else 1
        os.close(read_fd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    else:
        write_fd = None
    with open(os.path.join(state_dir, "endpoint"), "w") as fh:
        fh.write(standin.endpoint + "\n")
    with open(os.path.join(state_dir, "pid"), "w") as fh:
        fh.write("%d\n" % os.getpid())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    standin.start()
    if write_fd is not None:
        os.write(write_fd, b"1")
        os.close(write_fd)
    while not stop.wait(1.0):
        pass
    standin.stop()
    for name in ("endpoint", "pid"):
        try:
            os.unlink(os.path.join(state_dir, name))
        except FileNotFoundError:
            pass
    return 0


def _stop(args: argparse.Namespace) -> int:
    pid_file = os.path.join(os.path.abspath(args.state_dir), "pid")
    try:
        pid = int(open(pid_file).read().strip())
    except (OSError, ValueError):
        return 0
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            if b"gce_standin" not in fh.read():
                return 0            # the PID was reused by something else: never signal it
    except OSError:
        return 0
    os.kill(pid, signal.SIGTERM)
    for _unused in range(50):
        if not os.path.exists("/proc/%d" % pid):
            break
        time.sleep(0.1)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the stand-in until SIGTERM")
    serve.add_argument("--state-dir", required=True, help="writes 'endpoint' (the API base URL) and 'pid' here")
    serve.add_argument("--project", default="podnet-lab")
    serve.add_argument("--token", default="podnet-test-token")
    serve.add_argument("--instances", help="JSON list of add_instance() arguments")
    serve.add_argument("--netns", help="lab namespace to program with NetnsRouteSync")
    serve.add_argument("--lab-inventory", help="a lab's hosts.yml: one instance per node (its name, zone, network IPs)")
    serve.add_argument("--zone", default="lab-a", help="zone of the instances of --lab-inventory")
    serve.add_argument("--network", default="default", help="network of the instances of --lab-inventory")
    serve.add_argument("--background", action="store_true", help="detach once listening")
    stop = sub.add_parser("stop", help="stop the stand-in whose pid is in --state-dir")
    stop.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    return _serve(args) if args.command == "serve" else _stop(args)


if __name__ == "__main__":
    sys.exit(main())
