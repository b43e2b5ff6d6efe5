# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The node lock (engine/lock.py node_lock): one holder per network namespace, a second waits or times out.

Runs in a fresh network namespace of a fresh user namespace (``unshare --map-root-user --net``), which needs
no root: the abstract socket never exists in the machine's own namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


COLLECTIONS = Path(__file__).resolve().parents[3] / ".collections"

SCRIPT = r"""
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.podnet.cluster.plugins.module_utils.engine.lock import node_lock
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError

held, release, events = threading.Event(), threading.Event(), []

def holder():
    with node_lock() as waited:
        events.append(("first", waited))
        held.set()
        release.wait()

t = threading.Thread(target=holder)
t.start()
held.wait()
try:
    with node_lock(timeout=0.3, interval=0.05):
        events.append(("second got it while held", None))
except EngineError as exc:
    events.append(("timeout", "another podnet.cluster run" in exc.msg))
waiter_done = []
def waiter():
    with node_lock(timeout=60, interval=0.05) as waited:
        waiter_done.append(waited)
w = threading.Thread(target=waiter)
w.start()
time.sleep(0.3)
assert not waiter_done, "the waiter got the lock while it was held"
release.set()
t.join()
w.join()
assert events[0] == ("first", 0.0), events   # not held by anyone: no wait to report (no warning)
assert events[1] == ("timeout", True), events
assert waiter_done and waiter_done[0] > 0, waiter_done
with node_lock(timeout=0.3) as waited:   # free again once every holder left
    pass
print("ok")
"""


def test_node_lock_one_holder_per_namespace():
    assert shutil.which("unshare"), "unshare (util-linux) is missing: make setup installs it"
    proc = subprocess.run(["unshare", "--map-root-user", "--net", sys.executable, "-c", SCRIPT, str(COLLECTIONS)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
