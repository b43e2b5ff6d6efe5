# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The podnet verify probe protocol's shared pieces (module_utils/probe describes the protocol): its constants,
address normalisation, entering a network namespace (``setns``), and reading and writing one JSON line.

Standard library only; packed into the stand-alone probe script (module_utils/probe, ``own_source``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time

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


_libc_setns = None


def setns(fd):
    """Move the calling thread into the network namespace open as ``fd``."""
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    global _libc_setns
    if _libc_setns is None:
        import ctypes

        # the symbols of the running interpreter, libc's among them: no search for the library (find_library runs
        # ldconfig -p in a subprocess each time)
        libc = ctypes.CDLL(None, use_errno=True)
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


def _endpoint(address, port):
    return "[%s]:%d" % (address, port) if ":" in address else "%s:%d" % (address, port)
