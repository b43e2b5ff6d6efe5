# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The podnet verify probe protocol: a tiny TCP server and a concurrent client (target side).

Standard library only, Python 3.8+ (tested on 3.8), no Ansible import: ``podnet.cluster.probe_pod`` writes
this very file to the node (``<state_dir>/podnet_probe.py``) and runs it as the probe server::

    python3 podnet_probe.py serve --name NAME --port 47300 --bind ADDRESS [--bind ADDRESS ...] \\
        [--lifetime SECONDS] [--max-threads N] [--ready-fd FD]
    python3 podnet_probe.py serve --name NAME --control-fd FD ...   (addresses sent later on FD)

Protocol (one JSON object per line, UTF-8, at most :data:`MAX_LINE` bytes)::

    client -> server  {"v": 1, "id": PROBE_ID, "name": CLIENT_NAME, "local": CLIENT_LOCAL_ADDRESS}
    server -> client  {"v": 1, "name": SERVER_NAME, "hostname": ..., "seen": PEER_ADDRESS,
                       "seen_port": PEER_PORT, "local": SERVER_LOCAL_ADDRESS, "client": <the request>}

``local`` of the request is the address the client's socket is bound to after ``connect`` (the address
the client "sees itself as"); ``seen`` is the address the server got the connection from. They differ
exactly when something on the path translated the source address (NAT).

The server listens only on the addresses it is given (its probe addresses: a pod's own IPs, a node's node
IPs, the external address), one socket each (IPv6 ones ``IPV6_V6ONLY``), never on a wildcard address. It
handles at most ``--max-threads`` connections at once (more wait in the listen backlog) and exits on its own
after ``--lifetime`` seconds, so a server whose run was interrupted does not stay for ever.

The client (:func:`run_probes`) runs many probes at once from a thread pool. A probe may start in
another network namespace (``source_netns``, e.g. ``/proc/PID/ns/net`` of a probe pod): the worker
thread enters it with ``setns(2)`` only to create the socket, then returns to its own namespace;
a socket stays in the namespace it was created in, so connect, routing and source address selection
all happen in the source namespace.
"""

from __future__ import annotations

import argparse
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
from concurrent.futures import ThreadPoolExecutor

PROTOCOL_VERSION = 1
DEFAULT_PORT = 47300
DEFAULT_TIMEOUT = 3.0
MAX_LINE = 8192
#: Seconds after which a probe server exits on its own (0: never).
DEFAULT_LIFETIME = 1800.0
#: Connections a probe server handles at once (one thread each).
DEFAULT_MAX_THREADS = 32
#: Marker in the server's command line; probe_pod checks it before killing a recorded PID.
SCRIPT_NAME = "podnet_probe.py"
CLONE_NEWNET = 0x40000000

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_MAX_THREADS",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "SCRIPT_NAME",
    "normalize_address",
    "own_source",
    "run_probes",
    "serve",
    "setns",
]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #

def normalize_address(text):
    """Canonical text of an IP address (``fd00::0001`` -> ``fd00::1``); other text unchanged."""
    if text is None:
        return None
    value = str(text).split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return str(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def own_source():
    """The text of this file, to run it as a stand-alone server script."""
    loader = globals().get("__loader__")
    if loader is not None and hasattr(loader, "get_source"):
        try:
            text = loader.get_source(__name__)
        except Exception:  # pragma: no cover - depends on the importer
            text = None
        if text:
            return text
    path = globals().get("__file__")
    if path and os.path.isfile(path):
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    import inspect  # pragma: no cover - last resort

    return inspect.getsource(sys.modules[__name__])  # pragma: no cover


_libc_setns = None


def setns(fd):
    """Move the calling thread into the network namespace open as ``fd``."""
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    global _libc_setns
    if _libc_setns is None:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        func = libc.setns
        func.argtypes = [ctypes.c_int, ctypes.c_int]
        func.restype = ctypes.c_int
        _libc_setns = func
    if _libc_setns(fd, CLONE_NEWNET) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


def _read_line(sock, deadline):
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        sock.settimeout(remaining)
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError("line longer than %d bytes" % MAX_LINE)
    return data.split(b"\n", 1)[0]


def _send_json(sock, obj):
    sock.sendall(json.dumps(obj, sort_keys=True).encode("utf-8") + b"\n")


# --------------------------------------------------------------------------- #
# server
# --------------------------------------------------------------------------- #

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


def _endpoint(address, port):
    return "[%s]:%d" % (address, port) if ":" in address else "%s:%d" % (address, port)


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


# --------------------------------------------------------------------------- #
# client
# --------------------------------------------------------------------------- #

_ERRNO_TEXT = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
    errno.ETIMEDOUT: "timed out",
    errno.EADDRNOTAVAIL: "no source address",
}


def _error_text(exc, phase, timeout):
    if isinstance(exc, socket.timeout):
        return "timeout (%s, %.1f s)" % (phase, timeout)
    if isinstance(exc, OSError) and exc.errno in _ERRNO_TEXT:
        return "%s (%s)" % (_ERRNO_TEXT[exc.errno], phase)
    return "%s (%s)" % (exc, phase)


class _Namespaces(object):
    """Per-thread entry into source network namespaces (setns is per thread)."""

    def socket_in(self, path, family):
        if not path:
            return socket.socket(family, socket.SOCK_STREAM)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(home)
            raise LookupError("source network namespace %s: %s" % (path, exc.strerror))
        try:
            setns(target)
            try:
                return socket.socket(family, socket.SOCK_STREAM)
            finally:
                setns(home)
        finally:
            os.close(target)
            os.close(home)


def _one_probe(probe, namespaces, client_name, timeout):
    result = {
        "id": probe.get("id"),
        "source_netns": probe.get("source_netns"),
        "target": probe.get("target"),
        "port": probe.get("port"),
        "ok": False,
        "connected": False,
        "error": None,
        "local": None,
        "seen": None,
        "server": None,
        "server_hostname": None,
        "elapsed_ms": None,
    }
    if probe.get("meta") is not None:
        result["meta"] = probe["meta"]
    start = time.monotonic()
    deadline = start + timeout
    try:
        addr = ipaddress.ip_address(str(probe["target"]))
    except ValueError:
        result["error"] = "target %r is not an IP address" % (probe.get("target"),)
        return result
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        sock = namespaces.socket_in(probe.get("source_netns"), family)
    except LookupError as exc:
        result["error"] = str(exc)
        return result
    except OSError as exc:
        result["error"] = "cannot open a socket in %s: %s" % (probe.get("source_netns") or "the node", exc)
        return result
    phase = "connect"
    try:
        sock.settimeout(timeout)
        sock.connect((str(addr), int(probe["port"])))
        result["connected"] = True
        result["local"] = normalize_address(sock.getsockname()[0])
        if probe.get("connect_only"):
            result["ok"] = True
            return result
        phase = "answer"
        _send_json(sock, {"v": PROTOCOL_VERSION, "id": probe.get("id"), "name": client_name,
                          "local": result["local"]})
        line = _read_line(sock, deadline)
        if not line:
            result["error"] = "no answer (connection closed)"
            return result
        try:
            answer = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            result["error"] = "not a podnet probe server (unreadable answer)"
            return result
        if not isinstance(answer, dict) or "seen" not in answer:
            result["error"] = "not a podnet probe server (unexpected answer)"
            return result
        result["seen"] = normalize_address(answer.get("seen"))
        result["server"] = answer.get("name")
        result["server_hostname"] = answer.get("hostname")
        result["ok"] = True
    except (OSError, ValueError) as exc:
        result["error"] = _error_text(exc, phase, timeout)
    finally:
        result["elapsed_ms"] = int((time.monotonic() - start) * 1000)
        try:
            sock.close()
        except OSError:
            pass
    return result


def retryable(result):
    """A failed probe worth another attempt: it reached the point of talking to the network."""
    error = result.get("error") or ""
    return not result.get("ok") and not error.startswith(("target ", "source network namespace", "cannot open"))


def run_probes(probes, timeout=DEFAULT_TIMEOUT, client_name=None, max_parallel=64, retries=0, retry_pause=0.5):
    """Run every probe concurrently; return one result dict per probe, in the same order.

    Each probe is a dict with ``id``, ``target`` (an IP address), ``port``, optional ``source_netns``
    (a namespace file, None for the caller's own namespace), ``connect_only`` and ``meta`` (echoed).
    A result has ``ok`` (an answer was read; with ``connect_only``: connected), ``connected``,
    ``error``, ``local`` (the client's own address on the connection), ``seen`` (the address the
    server saw), ``server`` (the server's name), ``elapsed_ms`` and ``attempts``.

    A probe that failed is tried again up to ``retries`` times, after ``retry_pause`` seconds, once every
    probe of the round is done (so the retry does not compete with the first round); ``first_error`` then
    says why the first attempt failed.
    """
    probes = list(probes)
    if not probes:
        return []
    name = client_name or socket.gethostname()
    namespaces = _Namespaces()

    def round_of(batch):
        workers = max(1, min(int(max_parallel), len(batch)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_one_probe, p, namespaces, name, float(timeout)) for p in batch]
            return [f.result() for f in futures]

    results = round_of(probes)
    for result in results:
        result["attempts"] = 1
    for _attempt in range(max(0, int(retries))):
        failed = [i for i, r in enumerate(results) if retryable(r)]
        if not failed:
            break
        time.sleep(retry_pause)
        for index, again in zip(failed, round_of([probes[i] for i in failed])):
            again["attempts"] = results[index]["attempts"] + 1
            again["first_error"] = results[index].get("first_error") or results[index]["error"]
            results[index] = again
    return results


# --------------------------------------------------------------------------- #
# command line (the stand-alone server script)
# --------------------------------------------------------------------------- #

def main(argv=None):
    parser = argparse.ArgumentParser(prog=SCRIPT_NAME, description="podnet verify probe server/client")
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve", help="serve the probe protocol until SIGTERM or the end of its lifetime")
    srv.add_argument("--name", required=True)
    srv.add_argument("--port", type=int, default=DEFAULT_PORT)
    srv.add_argument("--ready-fd", type=int, default=None)
    where = srv.add_mutually_exclusive_group(required=True)
    where.add_argument("--bind", action="append", metavar="ADDRESS",
                       help="an address to listen on (repeat for more); never a wildcard")
    where.add_argument("--control-fd", type=int, default=None,
                       help='read the addresses as one JSON line {"bind": [...]} from this descriptor')
    srv.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME,
                     help="exit after this many seconds (0: never; default %(default)s)")
    srv.add_argument("--max-threads", type=int, default=DEFAULT_MAX_THREADS,
                     help="connections handled at once (default %(default)s)")
    cli = sub.add_parser("probe", help="probe TARGET:PORT once and print the result as JSON")
    cli.add_argument("target")
    cli.add_argument("--port", type=int, default=DEFAULT_PORT)
    cli.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    cli.add_argument("--source-netns", default=None)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.name, args.port, args.ready_fd, bind=args.bind, control_fd=args.control_fd,
                     lifetime=args.lifetime, max_threads=args.max_threads)
    if args.command == "probe":
        (result,) = run_probes([{"id": "cli", "target": args.target, "port": args.port,
                                 "source_netns": args.source_netns}], timeout=args.timeout)
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
        return 0 if result["ok"] else 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
