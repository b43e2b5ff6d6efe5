# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The podnet verify probe server (module_utils/probe describes the protocol): listens on its probe addresses only,
answers each connection with what it saw, handles a bounded number at once, and exits at the end of its lifetime.

Standard library only; packed into the stand-alone probe script (module_utils/probe, ``own_source``) that
``podnet.cluster.probe_pod`` runs on a node.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import select
import selectors
import signal
import socket
import sys
import threading
import time

from ansible_collections.podnet.cluster.plugins.module_utils.probe_wire import (
    DEFAULT_LIFETIME,
    DEFAULT_MAX_THREADS,
    DEFAULT_PORT,
    MAX_LINE,
    PROTOCOL_VERSION,
    _endpoint,
    _read_line,
    _send_json,
    normalize_address,
)


def _listen(addresses, port, retry_until=0.0):
    """One listening socket per address (its own address only, never a wildcard).

    An address that is not usable yet (``EADDRNOTAVAIL``: an IPv6 address still in duplicate address
    detection) is retried until ``retry_until`` (a ``time.monotonic()`` value).
    """
    if not addresses:
        raise OSError(errno.EINVAL, "no address to listen on (a probe server binds only its probe addresses)")
    socks = []
    try:
        for text in addresses:
            addr = ipaddress.ip_address(str(text))
            if addr.is_unspecified:
                raise ValueError("%s is a wildcard address; a probe server binds only its probe addresses" % addr)
            family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            while True:
                try:
                    sock.bind((str(addr), port))
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRNOTAVAIL or time.monotonic() >= retry_until:
                        raise OSError(exc.errno, "cannot listen on %s: %s" % (
                            _endpoint(str(addr), port), exc.strerror or exc))
                    time.sleep(0.1)
            sock.listen(256)
    except (OSError, ValueError):
        for sock in socks:
            sock.close()
        raise
    return socks


def _handle(conn, name, hostname, timeout):
    try:
        deadline = time.monotonic() + timeout
        peer = conn.getpeername()
        local = conn.getsockname()
        try:
            line = _read_line(conn, deadline)
            request = json.loads(line.decode("utf-8")) if line else {}
            if not isinstance(request, dict):
                request = {"raw": str(request)[:200]}
        except (ValueError, UnicodeDecodeError):
            request = {"error": "unreadable request"}
        _send_json(conn, {
            "v": PROTOCOL_VERSION,
            "name": name,
            "hostname": hostname,
            "seen": normalize_address(peer[0]),
            "seen_port": peer[1],
            "local": normalize_address(local[0]),
            "client": request,
        })
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def _read_control(control_fd, deadline):
    """The addresses to bind, sent by the caller as one JSON line ``{"bind": [...]}`` on ``control_fd``."""
    data = b""
    try:
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OSError(errno.ETIMEDOUT, "no addresses to bind were sent before the end of the lifetime")
            ready, _w, _x = select.select([control_fd], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(control_fd, 4096)
            if not chunk:
                raise OSError(errno.EPIPE, "the caller went away before sending the addresses to bind")
            data += chunk
            if len(data) > MAX_LINE:
                raise OSError(errno.EINVAL, "control line longer than %d bytes" % MAX_LINE)
    finally:
        os.close(control_fd)
    try:
        message = json.loads(data.split(b"\n", 1)[0].decode("utf-8"))
        bind = [str(a) for a in message["bind"]]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise OSError(errno.EINVAL, "unreadable control line %r" % data[:200])
    return bind


def serve(name, port=DEFAULT_PORT, ready_fd=None, timeout=10.0, bind=None, control_fd=None,
          lifetime=DEFAULT_LIFETIME, max_threads=DEFAULT_MAX_THREADS, bind_wait=5.0):
    """Serve the probe protocol on the addresses ``bind`` until SIGTERM/SIGINT or the end of ``lifetime``.

    * ``bind``: the addresses to listen on (one socket each, never a wildcard). With ``control_fd`` they
      are read from that descriptor instead (one JSON line ``{"bind": [...]}``), for a pod whose addresses
      are known only once its namespace is wired: the server first reports ``{"waiting": true, "pid": ...}``
      on ``ready_fd``, then waits.
    * ``lifetime``: seconds after the start at which the server exits on its own (0: never), whatever
      happens to the run that started it.
    * ``max_threads``: connections handled at once; more wait in the listen backlog.
    * ``ready_fd``: one JSON line is written to it once the sockets listen (``ready``, ``pid``, ``port``,
      ``listening``), or the error that prevented it, and the descriptor is closed: the caller waits on it
      instead of polling.
    """
    started = time.monotonic()
    lifetime = float(lifetime or 0)
    deadline = started + lifetime if lifetime > 0 else float("inf")
    max_threads = max(1, int(max_threads))

    def report(obj, last=True):
        if ready_fd is None:
            return
        try:
            os.write(ready_fd, (json.dumps(obj) + "\n").encode("utf-8"))
        finally:
            if last:
                os.close(ready_fd)

    stop = threading.Event()

    def on_signal(signum, frame):  # pylint: disable=unused-argument
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        if control_fd is not None:
            report({"waiting": True, "pid": os.getpid()}, last=False)
            bind = _read_control(control_fd, deadline)
        socks = _listen(list(bind or []), port, retry_until=min(deadline, time.monotonic() + bind_wait))
    except (OSError, ValueError) as exc:
        message = str(getattr(exc, "strerror", None) or exc)
        sys.stderr.write("%s: %s\n" % (name, message))
        report({"ready": False, "error": message})
        return 1
    listening = [_endpoint(normalize_address(s.getsockname()[0]), port) for s in socks]
    report({"ready": True, "pid": os.getpid(), "port": port, "listening": listening,
            "lifetime": lifetime, "max_threads": max_threads})
    hostname = socket.gethostname()
    slots = threading.BoundedSemaphore(max_threads)

    def handle(conn):
        try:
            _handle(conn, name, hostname, timeout)
        finally:
            slots.release()

    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    reason = "stopped by a signal"
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason = "lifetime of %g s over" % lifetime
            break
        # A free handler slot first: at most max_threads connections are handled at once.
        if not slots.acquire(timeout=min(0.5, remaining)):
            continue
        try:
            events = selector.select(timeout=min(0.5, remaining))
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            events = []
        conn = None
        for key, _mask in events:
            try:
                conn, _addr = key.fileobj.accept()
                break
            except OSError:  # BlockingIOError, ConnectionAbortedError, ...
                continue
        if conn is None:
            slots.release()
            continue
        conn.setblocking(True)
        try:
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
        except RuntimeError:  # pragma: no cover - cannot start a thread
            slots.release()
            conn.close()
    for sock in socks:
        sock.close()
    sys.stderr.write("%s: %s, exiting\n" % (name, reason))
    return 0
