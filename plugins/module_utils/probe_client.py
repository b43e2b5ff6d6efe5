# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The podnet verify probe client (module_utils/probe describes the protocol): many probes at once from a thread
pool, each from the caller's network namespace or another one (``source_netns``), retried when worth it.

Standard library only; packed into the stand-alone probe script (module_utils/probe, ``own_source``).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.podnet.cluster.plugins.module_utils.probe_wire import (
    DEFAULT_TIMEOUT,
    PROTOCOL_VERSION,
    _read_line,
    _send_json,
    normalize_address,
    setns,
)


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
