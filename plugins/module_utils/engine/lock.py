# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The node lock: one podnet.cluster run (a converge, a teardown, the boot restore) changes a node at a time.

Standard library only (Python 3.8+): the boot-time restore program takes the lock too.
"""

from __future__ import annotations

import errno
import socket
import time
from contextlib import contextmanager

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError

# An abstract Unix socket name: it lives in the network namespace (one per node, lab nodes included), needs no
# file, and is released by the kernel when its holder exits, however it exits.
NODE_LOCK_NAME = "\0podnet.cluster/node-lock"


@contextmanager
def node_lock(timeout=600.0, interval=0.2):
    """Hold this node's podnet.cluster lock; yields the seconds waited for it.

    Two runs that change one node at once (two site runs, a run and the boot restore) would both read the node
    as it was and both add the same bridge or route ("File exists"); with the lock the second reads what the
    first left. Raises :class:`EngineError` after ``timeout`` seconds.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    start = time.monotonic()
    waited = False
    try:
        while True:
            try:
                sock.bind(NODE_LOCK_NAME)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise EngineError("cannot take the node lock (abstract socket %r): %s"
                                      % (NODE_LOCK_NAME[1:], exc))
                if time.monotonic() - start > timeout:
                    raise EngineError("another podnet.cluster run has held this node's lock (abstract socket %r) "
                                      "for more than %d s; nothing was changed" % (NODE_LOCK_NAME[1:], timeout))
                waited = True
                time.sleep(interval)
        # 0.0 unless another run held the lock (the clock alone moves between two reads)
        yield (time.monotonic() - start) if waited else 0.0
    finally:
        sock.close()
