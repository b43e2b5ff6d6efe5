# SPDX-License-Identifier: Apache-2.0
"""The Compute Engine client (plugins/module_utils/gce_client.py) with a recording session: one session per thread,
and an operation wait whose request may outlast the API's hold of the call."""

from __future__ import annotations

import threading

from ansible_collections.podnet.cluster.plugins.module_utils import gce_client
from ansible_collections.podnet.cluster.plugins.module_utils.gce_client import WAIT_HOLD, ComputeClient


class Response:
    def __init__(self, payload):
        self.status_code = 200
        self._payload = payload
        self.content = b"x"
        self.headers = {}

    def json(self):
        return self._payload


class RecordingSession:
    """A stand-in for requests.Session: records the thread of every request and each request's timeout."""

    made = []

    def __init__(self, answers=None):
        self.threads = set()
        self.calls = []
        self.answers = list(answers or [])
        RecordingSession.made.append(self)

    def request(self, method, url, params=None, json=None, timeout=None):
        self.threads.add(threading.get_ident())
        self.calls.append((method, url, timeout))
        return Response(self.answers.pop(0) if self.answers else {"items": []})


def test_every_thread_has_its_own_session():
    RecordingSession.made = []

    def new_session():
        return RecordingSession()

    client = ComputeClient(new_session, "http://api.invalid/compute/v1/", "p")
    start = threading.Barrier(6)

    def work():
        start.wait()
        for _unused in range(20):
            client.call("GET", "projects/p/global/routes")

    threads = [threading.Thread(target=work) for _unused in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(RecordingSession.made) == 6
    assert all(len(s.threads) == 1 for s in RecordingSession.made)
    assert len({next(iter(s.threads)) for s in RecordingSession.made}) == 6
    assert sum(len(s.calls) for s in RecordingSession.made) == 6 * 20
    assert client.requests == 6 * 20


def test_build_session_gives_a_factory_of_new_sessions():
    factory = gce_client.build_session("accesstoken", None, "token", [])
    one, two = factory(), factory()
    assert one is not two
    assert one.headers["User-Agent"] == gce_client.USER_AGENT


def test_an_operation_wait_may_take_longer_than_the_api_holds_it():
    session = RecordingSession(answers=[{"name": "op-1", "status": "RUNNING"}, {"name": "op-1", "status": "DONE"}])
    client = ComputeClient(session, "http://api.invalid/compute/v1/", "p", request_timeout=7.0,
                           sleep=lambda _s: None)
    done = client.wait({"name": "op-1", "status": "PENDING"}, timeout=600)
    assert done["status"] == "DONE"
    waits = [c for c in session.calls if c[1].endswith("/wait")]
    assert len(waits) == 2
    assert all(timeout > WAIT_HOLD and timeout >= WAIT_HOLD + 7.0 for _m, _u, timeout in waits)
    client.call("GET", "projects/p/global/routes")
    assert session.calls[-1][2] == 7.0
