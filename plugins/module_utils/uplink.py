# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Move a host's uplink into a Linux bridge in one step, check it, and move it back.

Target side, standard library only, no Ansible import: the module
``podnet.cluster.uplink_bridge``, a node module and a boot-time restore script
all call it the same way.

The move ("l2_bridge" fabric): the bridge is created with the uplink's MTU and
MAC address if it does not exist, the uplink is enslaved, and every global
address of the uplink and every route through it (any table, default route
included, with its metric, protocol, scope, source, table, MTU...) move to the
bridge. All of it is one ``ip -batch``, so the node is without a working
address for microseconds, not for the round trips of separate commands. IPv6
addresses are re-added with ``nodad``: they already passed duplicate address
detection on this segment, and a tentative address would cut IPv6 for a second.

The reverse (:func:`plan_restore`) is computed from the snapshot taken before
the move and the state now, so it also repairs a half-done move (a batch that
stopped at a failing line, a host that lost power). It only removes what the
move put on the bridge: addresses and routes that were the uplink's; it deletes
the bridge only if the move created it and nothing else uses it.

The engine in three layers, each usable alone, all re-exported here (``from ...module_utils import uplink``):

* pure functions over decoded ``ip -json`` data: uplink_state (:func:`snapshot_from_ip`, the ``ip`` words,
  :func:`render`) and uplink_plan (:func:`plan_move`, :func:`plan_restore`, :func:`check_targets`,
  :func:`simulate_move`), unit-tested without a kernel;
* uplink_io: I/O through a *runner*, any object with ``run(argv, data=None) -> (rc, out, err)`` (an engine
  runner, engine/runner.py): :func:`read_snapshot`, :func:`apply_batch`, :func:`probe`, and the whole
  transaction, :func:`move` and :func:`restore`: apply, verify, check reachability, optionally wait for a
  confirmation, and roll back by themselves if anything fails;
* this file: the command line (:func:`main`), which also runs as a file of its own with the system Python and
  no Ansible (``python3 uplink.py plan|move|restore ...``): the collection's module_utils are then the files
  beside it.

Limits: multipath routes and routes using nexthop objects or encapsulation
through the uplink are refused (before any change); route metric locks
(``mtu lock``) and route expiry times are not carried over; permanent
neighbour entries stay on the uplink.
"""

from __future__ import annotations

import json
import os
import sys

_PKG = "ansible_collections.podnet.cluster.plugins.module_utils"


def _as_collection():
    """Run as a file (``python3 uplink.py``) where the collection is not importable: its module_utils package
    is the directory of this file (the engine is standard library only, so nothing else is needed)."""
    import types
    here = os.path.dirname(os.path.abspath(__file__))
    names = _PKG.split(".")
    for end in range(1, len(names) + 1):
        name = ".".join(names[:end])
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [here] if end == len(names) else []
            sys.modules[name] = package


if __name__ == "__main__":
    try:
        __import__(_PKG + ".uplink_io")
    except ImportError:
        _as_collection()

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import ProcessRunner  # noqa: E402
from ansible_collections.podnet.cluster.plugins.module_utils.uplink_io import (  # noqa: E402
    CHECK_METHODS,
    DHCP_CLIENTS,
    apply_batch,
    check_all,
    dhcp_clients,
    find_uplink,
    load_snapshot,
    move,
    probe,
    read_assign_type,
    read_snapshot,
    restore,
    save_snapshot,
)
from ansible_collections.podnet.cluster.plugins.module_utils.uplink_plan import (  # noqa: E402
    bridge_kept,
    check_targets,
    is_moved,
    plan_move,
    plan_restore,
    simulate_move,
    uplink_for_address,
)
from ansible_collections.podnet.cluster.plugins.module_utils.uplink_state import (  # noqa: E402
    ADDR_SET,
    FOREVER,
    SNAPSHOT_VERSION,
    UplinkError,
    add_order,
    addr_args,
    addr_id,
    check_lines,
    dynamic_addresses,
    global_addresses,
    render,
    restorable_mac,
    route_args,
    snapshot_from_ip,
    valid_mac,
)

__all__ = [
    "SNAPSHOT_VERSION", "FOREVER", "UplinkError", "snapshot_from_ip", "global_addresses", "add_order", "addr_id",
    "addr_args", "route_args", "ADDR_SET", "valid_mac", "restorable_mac", "check_lines", "dynamic_addresses",
    "render", "uplink_for_address", "plan_move", "is_moved", "plan_restore", "bridge_kept", "simulate_move",
    "check_targets", "CHECK_METHODS", "DHCP_CLIENTS", "read_assign_type", "read_snapshot", "find_uplink",
    "save_snapshot", "load_snapshot", "dhcp_clients", "apply_batch", "probe", "check_all", "move", "restore",
    "ProcessRunner", "main",
]


# --------------------------------------------------------------------------- #
# command line (boot-time restore, by hand): python3 uplink.py move|restore|plan ...
# --------------------------------------------------------------------------- #

def main(argv=None, runner=None, out=None):
    """``uplink.py {plan,move,restore} --bridge B --uplink U [--snapshot PATH] [--check-address A ...]
    [--check-method ping|neigh] [--check-timeout S]``: the engine without Ansible, printing one JSON
    document. ``move`` saves the snapshot first (when the uplink is not yet a port of the bridge),
    ``restore`` reads it and removes it when done. Exit status 0 done (or nothing to do), 1 rolled
    back, 2 bad input or refused before any change."""
    import argparse

    parser = argparse.ArgumentParser(prog="uplink.py", description="Move an uplink into a bridge and back "
                                     "(podnet.cluster), in one ip -batch, checked, rolled back on failure.")
    parser.add_argument("action", choices=["plan", "move", "restore"])
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--uplink", required=True)
    parser.add_argument("--snapshot", help="default /etc/podnet/uplink-<bridge>.json")
    parser.add_argument("--check-address", action="append", default=[])
    parser.add_argument("--check-method", choices=CHECK_METHODS, default="ping")
    parser.add_argument("--check-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    runner = runner or ProcessRunner()
    out = out or sys.stdout
    path = args.snapshot or "/etc/podnet/uplink-%s.json" % args.bridge
    report = {"action": args.action, "bridge": args.bridge, "uplink": args.uplink, "snapshot": path}
    status = 0
    try:
        current = read_snapshot(runner, args.bridge, args.uplink)
        if args.action == "plan":
            report["commands"] = plan_move(current)
        elif args.action == "move":
            if plan_move(current) and (current["links"].get(args.uplink) or {}).get("master") != args.bridge:
                save_snapshot(path, current)
            result = move(runner, args.bridge, args.uplink, args.check_address, args.check_method,
                          args.check_timeout, before=current)
            report.update((k, result.get(k)) for k in ("changed", "commands", "checked", "rolled_back",
                                                       "rollback_commands", "rollback_complete", "error"))
            status = 1 if result["error"] else 0
        else:
            saved = load_snapshot(path)
            if saved is None:
                raise UplinkError("no snapshot at %s" % path)
            result = restore(runner, saved, args.check_address, args.check_method, args.check_timeout)
            report.update((k, result.get(k)) for k in ("changed", "commands", "checked", "rolled_back",
                                                       "rollback_commands", "rollback_complete", "error"))
            if result["error"]:
                status = 1
            else:
                os.unlink(path)
    except (UplinkError, OSError) as exc:
        report["error"] = str(exc)
        status = 2
    out.write(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
