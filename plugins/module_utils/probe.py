# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The podnet verify probe protocol: a tiny TCP server and a concurrent client (target side).

Standard library only, Python 3.8+ (tested on 3.8), no Ansible import: ``podnet.cluster.probe_pod`` writes
the probe's modules packed into one file (:func:`own_source`) to the node (``<state_dir>/podnet_probe.py``) and
runs it as the probe server::

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

One file to the module, four to read: the protocol's shared pieces are probe_wire, the server probe_server,
the client probe_client; this module re-exports them, holds the command line, and packs the four into the one
stand-alone script a node runs (:func:`own_source`). They are standard library only, import nothing else of the
collection, and import each other only through lines that the packing leaves out.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys

from ansible_collections.podnet.cluster.plugins.module_utils.engine.units import module_source
from ansible_collections.podnet.cluster.plugins.module_utils.probe_client import retryable, run_probes
from ansible_collections.podnet.cluster.plugins.module_utils.probe_server import serve
from ansible_collections.podnet.cluster.plugins.module_utils.probe_wire import (
    DEFAULT_LIFETIME,
    DEFAULT_MAX_THREADS,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    SCRIPT_NAME,
    normalize_address,
    setns,
)

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_MAX_THREADS",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "SCRIPT_NAME",
    "normalize_address",
    "own_source",
    "retryable",
    "run_probes",
    "serve",
    "setns",
]

_PKG = "ansible_collections.podnet.cluster.plugins.module_utils"
#: The modules of the stand-alone script, in the order it defines them (this one last: its command line).
SCRIPT_MODULES = tuple(_PKG + "." + name for name in ("probe_wire", "probe_server", "probe_client", "probe"))


def _without_imports_of_each_other(text, first):
    """``text`` without its imports of the collection (and, but in the first module, of ``__future__``)."""
    lines = text.splitlines(True)
    for node in reversed(ast.parse(text).body):
        ours = (node.module or "").startswith("ansible_collections.") if isinstance(node, ast.ImportFrom) else False
        if ours or isinstance(node, ast.ImportFrom) and node.module == "__future__" and not first:
            del lines[node.lineno - 1:node.end_lineno]
    return "".join(lines)


def own_source():
    """The text of the stand-alone server script (``podnet_probe.py``): the probe's modules in one file."""
    texts = [_without_imports_of_each_other(module_source(name), index == 0)
             for index, name in enumerate(SCRIPT_MODULES)]
    return "\n\n".join(texts)


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
