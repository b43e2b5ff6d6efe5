# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""A small Compute Engine v1 REST client for podnet.cluster.gce_routes (controller side).

Needs google-auth and requests (pinned in requirements.txt); the rules of the routes are in gce.py. Here too:
what the API's errors and finished operations mean (retryable, quota). Calls:
routes list (with filter and nextPageToken pagination), get, insert, delete; globalOperations wait
or get until DONE; instances get. 429, 5xx, the 403 rate-limit reasons and connection errors are
retried with exponential backoff and jitter until a deadline; every other error is raised as
ApiError carrying the API's own message.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple


IMPORT_ERROR: Optional[str] = None
try:
    import requests
    import google.auth
    import google.auth.exceptions
    from google.auth import compute_engine
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import credentials as oauth2_credentials
    from google.oauth2 import service_account
except ImportError:  # pragma: no cover - reported by the module with missing_required_lib
    IMPORT_ERROR = traceback.format_exc()

USER_AGENT = "podnet.cluster-gce_routes/1"
RETRY_STATUS = (429, 500, 502, 503, 504)
RETRY_REASONS = ("rateLimitExceeded", "userRateLimitExceeded", "backendError", "internalError")
QUOTA_REASONS = ("quotaExceeded", "QUOTA_EXCEEDED")


# --------------------------------------------------------------------------------------- API errors

@dataclass(frozen=True)
class ErrorInfo:
    status: int
    reason: str
    message: str


def parse_error(status: int, body: Any) -> ErrorInfo:
    """The Google JSON error body ({"error": {"code", "message", "errors": [{"reason"}]}}) -> ErrorInfo."""
    reason, message = "", ""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or "")
        errors = err.get("errors") or []
        if errors and isinstance(errors[0], dict):
            reason = str(errors[0].get("reason") or "")
            message = message or str(errors[0].get("message") or "")
        reason = reason or str(err.get("status") or "")
    elif isinstance(err, str):
        message = err
    elif isinstance(body, str):
        message = body.strip()[:300]
    return ErrorInfo(status, reason, message or "HTTP %d" % status)


def is_retryable(info: ErrorInfo) -> bool:
    """429 and 5xx, and the 403 rate-limit reasons, are worth retrying; quota is not."""
    if info.reason in QUOTA_REASONS:
        return False
    return info.status in RETRY_STATUS or (info.status == 403 and info.reason in RETRY_REASONS)


def is_quota(info: ErrorInfo) -> bool:
    return info.reason in QUOTA_REASONS or (info.status == 403 and "quota" in info.message.lower()
                                            and info.reason not in RETRY_REASONS)


def backoff_delay(attempt: int, initial: float = 0.25, factor: float = 2.0, cap: float = 8.0) -> float:
    """Exponential backoff before retry ``attempt`` (1-based), without jitter."""
    return min(cap, initial * factor ** max(attempt - 1, 0))


def operation_errors(op: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(code, message) pairs of a finished operation's error, [] if it succeeded."""
    err = op.get("error") or {}
    out = [(str(e.get("code") or ""), str(e.get("message") or "")) for e in (err.get("errors") or [])
           if isinstance(e, dict)]
    if not out and err:
        out = [("", str(err))]
    return out


def operation_error_text(op: Mapping[str, Any]) -> str:
    parts = ["%s: %s" % (c, m) if c else m for c, m in operation_errors(op)]
    extra = ""
    if op.get("httpErrorStatusCode"):
        extra = " (HTTP %s %s)" % (op.get("httpErrorStatusCode"), op.get("httpErrorMessage") or "")
    return "; ".join(parts) + extra


def operation_is_quota(op: Mapping[str, Any]) -> bool:
    return any(c in QUOTA_REASONS or "quota" in m.lower() for c, m in operation_errors(op))


class ApiError(Exception):
    """A failed API call: HTTP status, the API's reason and message, and the request."""

    def __init__(self, info: ErrorInfo, method: str, path: str, note: str = ""):
        self.info = info
        self.status = info.status
        self.reason = info.reason
        self.message = info.message
        self.method = method
        self.path = path
        text = "%s %s: HTTP %d%s: %s" % (method, path, info.status, " %s" % info.reason if info.reason else "",
                                         info.message)
        super().__init__(text + (" (%s)" % note if note else ""))


class OperationTimeout(Exception):
    pass


class AuthError(Exception):
    pass


# globalOperations.wait holds the call until the operation is DONE or about two minutes have passed (the API's
# documented deadline); a request timeout below that would cut every slow wait and count it as a connection error.
WAIT_HOLD = 120.0


def build_session(auth_kind: str, service_account_file: Optional[str], access_token: Optional[str],
                  scopes: Sequence[str]) -> Callable[[], "AuthorizedSession"]:
    """A factory of AuthorizedSessions (requests.Sessions that add the bearer token) for ``auth_kind``.

    The credentials are loaded once, here (errors surface before any request); each call of the factory makes a
    new session over them. A requests.Session is not thread-safe: ComputeClient gives each thread its own.
    """
    try:
        if auth_kind == "accesstoken":
            creds = oauth2_credentials.Credentials(token=access_token)
        elif auth_kind == "serviceaccount":
            creds = service_account.Credentials.from_service_account_file(service_account_file, scopes=list(scopes))
        elif auth_kind == "machineaccount":
            creds = compute_engine.Credentials(scopes=list(scopes))
        else:
            creds, _project = google.auth.default(scopes=list(scopes))
    except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
        raise AuthError("cannot load %s credentials: %s" % (auth_kind, exc))

    def factory() -> "AuthorizedSession":
        session = AuthorizedSession(creds)
        session.headers["User-Agent"] = USER_AGENT
        return session

    return factory


class ComputeClient:
    """Thread-safe calls against one project of one Compute Engine API endpoint.

    ``session`` is a factory of sessions (build_session): every thread gets its own session, made on its first
    call (a requests.Session, its connection pool and the token refresh of an AuthorizedSession are not safe to
    share between threads). A session object given instead is used as it is, by whichever thread calls.
    """

    def __init__(self, session: Any, endpoint: str, project: str, retry_deadline: float = 120.0,
                 request_timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self._factory: Callable[[], Any] = session if callable(session) and not hasattr(session, "request") \
            else (lambda: session)
        self._local = threading.local()
        self.endpoint = endpoint.rstrip("/") + "/"
        self.project = project
        self.retry_deadline = retry_deadline
        self.request_timeout = request_timeout
        self.sleep = sleep
        self.clock = clock
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0

    @property
    def session(self) -> Any:
        """This thread's session (made on first use)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._factory()
        return session

    def _count(self, retry: bool = False) -> None:
        with self._lock:
            if retry:
                self.retries += 1
            else:
                self.requests += 1

    def call(self, method: str, path: str, params: Optional[Mapping[str, Any]] = None,
             body: Optional[Mapping[str, Any]] = None, none_if_404: bool = False,
             timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """One API call with retries; the decoded JSON answer, or None for 404 when ``none_if_404``.

        ``timeout``: seconds this request may take (default: the client's request timeout)."""
        url = self.endpoint + path
        timeout = self.request_timeout if timeout is None else timeout
        deadline = self.clock() + self.retry_deadline
        attempt = 0
        while True:
            self._count()
            retry_after = None
            try:
                resp = self.session.request(method, url, params=params, json=body, timeout=timeout)
            except google.auth.exceptions.GoogleAuthError as exc:
                # AuthorizedSession refreshes the token before a request and after a 401; an access token
                # cannot be refreshed, a metadata server or key may be unreachable or refused
                raise ApiError(ErrorInfo(401, "authError", "the credentials were refused, or could not be obtained "
                                         "or refreshed: %s" % exc), method, path)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = ErrorInfo(0, "connectionError", str(exc))
            else:
                if 200 <= resp.status_code < 300:
                    return resp.json() if resp.content else {}
                try:
                    payload = resp.json()
                except ValueError:
                    payload = resp.text
                last = parse_error(resp.status_code, payload)
                if resp.status_code == 404 and none_if_404:
                    return None
                if resp.status_code == 401:
                    raise ApiError(ErrorInfo(401, last.reason or "unauthorized",
                                             "%s (the credentials were refused)" % last.message), method, path)
                if not is_retryable(last):
                    raise ApiError(last, method, path)
                retry_after = _retry_after(resp.headers.get("Retry-After"))
            attempt += 1
            delay = backoff_delay(attempt) * random.uniform(0.75, 1.25)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if self.clock() + delay > deadline:
                raise ApiError(last, method, path, "gave up after %d attempt(s) within the retry deadline of %gs"
                               % (attempt, self.retry_deadline))
            self._count(retry=True)
            self.sleep(delay)

    # ------------------------------------------------------------------------------------- routes
    def list_routes(self, filter_: Optional[str], max_results: int = 500) -> List[Dict[str, Any]]:
        """Every route matching ``filter_``, following nextPageToken."""
        items: List[Dict[str, Any]] = []
        params: Dict[str, Any] = {"maxResults": max_results}
        if filter_:
            params["filter"] = filter_
        seen_tokens = set()
        while True:
            page = self.call("GET", "projects/%s/global/routes" % self.project, params=dict(params)) or {}
            items.extend(page.get("items") or [])
            token = page.get("nextPageToken")
            if not token:
                return items
            if token in seen_tokens:
                raise ApiError(ErrorInfo(0, "pagination", "the API returned page token %r twice" % token), "GET",
                               "projects/%s/global/routes" % self.project)
            seen_tokens.add(token)
            params["pageToken"] = token

    def get_route(self, name: str) -> Optional[Dict[str, Any]]:
        return self.call("GET", "projects/%s/global/routes/%s" % (self.project, name), none_if_404=True)

    def insert_route(self, body: Mapping[str, Any]) -> Dict[str, Any]:
        return self.call("POST", "projects/%s/global/routes" % self.project, body=body) or {}

    def delete_route(self, name: str) -> Optional[Dict[str, Any]]:
        """The delete operation, or None when the route is already gone (404)."""
        return self.call("DELETE", "projects/%s/global/routes/%s" % (self.project, name), none_if_404=True)

    # ---------------------------------------------------------------------------------- instances
    def get_instance(self, path: str) -> Optional[Dict[str, Any]]:
        """instances.get of 'projects/P/zones/Z/instances/I'; None when it does not exist."""
        return self.call("GET", path, none_if_404=True)

    # --------------------------------------------------------------------------------- operations
    def wait(self, op: Mapping[str, Any], timeout: float, method: str = "wait") -> Dict[str, Any]:
        """Poll a global operation until DONE (globalOperations.wait, or get when ``method`` is 'get').

        The operation URL is built from its name under our endpoint: its selfLink names the public
        endpoint, which a private endpoint or a test stand-in must not be bypassed for.
        """
        name = op.get("name")
        if not name:
            raise ApiError(ErrorInfo(0, "badOperation", "the API answered without an operation: %r" % (op,)), "POST",
                           "projects/%s/global/routes" % self.project)
        path = "projects/%s/global/operations/%s" % (self.project, name)
        deadline = self.clock() + timeout
        current: Dict[str, Any] = dict(op)
        pause = 0.05
        while current.get("status") != "DONE":
            if self.clock() > deadline:
                raise OperationTimeout("operation %s (%s %s) is still %s after %gs" % (
                    name, current.get("operationType", "?"), current.get("targetLink", "?"),
                    current.get("status", "?"), timeout))
            started = self.clock()
            if method == "wait":
                # the server may hold this call up to WAIT_HOLD seconds: the request may take that long, and more
                current = self.call("POST", path + "/wait", timeout=WAIT_HOLD + self.request_timeout) or {}
            else:
                current = self.call("GET", path) or {}
            if current.get("status") != "DONE" and self.clock() - started < 1.0:
                # the wait endpoint answered at once (or we poll with get): do not spin
                self.sleep(pause)
                pause = min(pause * 2, 2.0)
        return current


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
