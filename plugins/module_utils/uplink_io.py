# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The uplink move's I/O: reading the kernel's state, running the batch, probing, and the whole transaction.

Part of the uplink engine (module_utils/uplink is its entry point and command line). Commands run through a
*runner*, any object with ``run(argv, data=None) -> (rc, out, err)``: an engine runner (engine/runner.py), the
module's, or a test's. :func:`read_snapshot` (the collection's one ``ip -json`` helper, iproute.run_ip_json),
:func:`save_snapshot` (the one atomic writer, fileutil), :func:`apply_batch`, :func:`probe`; :func:`move` and
:func:`restore` apply, verify, check reachability, optionally wait for a confirmation, and roll back by themselves
if anything fails. Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import run_ip_json
from ansible_collections.podnet.cluster.plugins.module_utils.uplink_plan import (
    check_targets,
    plan_move,
    plan_restore,
    uplink_for_address,
)
from ansible_collections.podnet.cluster.plugins.module_utils.uplink_state import (
    SNAPSHOT_VERSION,
    UplinkError,
    snapshot_from_ip,
)

CHECK_METHODS = ("ping", "neigh")
DHCP_CLIENTS = ("dhclient", "dhcpcd", "udhcpc", "pump", "dhcp6c")


def _ip_json(runner, args, ip="ip"):
    """``ip -N -json ARGS`` decoded (iproute.run_ip_json), its failure as an UplinkError."""
    try:
        return run_ip_json(runner, args, ip=ip)
    except EngineError as exc:
        raise UplinkError(exc.msg)


def read_assign_type(name, sys_root="/sys/class/net"):
    """How the kernel says ``name`` got its MAC address (``/sys/class/net/NAME/addr_assign_type``): 0 permanent,
    1 random, 2 stolen from another device, 3 set by someone; ``None`` when it cannot be read."""
    try:
        with open(os.path.join(sys_root, name, "addr_assign_type")) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def read_snapshot(runner, bridge, uplink, ip="ip"):
    """:func:`snapshot_from_ip` of the running kernel (four ``ip -json`` reads), with each link's
    ``addr_assign_type``."""
    snap = snapshot_from_ip(
        _ip_json(runner, ["-d", "link", "show"], ip),
        _ip_json(runner, ["addr", "show"], ip),
        _ip_json(runner, ["-d", "-4", "route", "show", "table", "all"], ip),
        _ip_json(runner, ["-d", "-6", "route", "show", "table", "all"], ip),
        bridge, uplink)
    for name, link in snap["links"].items():
        link["addr_assign_type"] = read_assign_type(name)
    return snap


def find_uplink(runner, address, bridge, saved=None, ip="ip"):
    """:func:`uplink_for_address` on the running kernel."""
    return uplink_for_address(_ip_json(runner, ["addr", "show"], ip), address, bridge, saved)


def save_snapshot(path, snap):
    """Write ``snap`` as JSON to ``path`` with the collection's one atomic writer (fileutil), mode 0644."""
    atomic_write(path, json.dumps(snap, indent=1, sort_keys=True) + "\n", mode=0o644, create_dirs=True)


def load_snapshot(path):
    """The snapshot saved at ``path``; ``None`` if there is no such file."""
    try:
        with open(path) as handle:
            snap = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UplinkError("%s: unreadable uplink snapshot (%s)" % (path, exc))
    if not isinstance(snap, dict) or snap.get("version") != SNAPSHOT_VERSION or "links" not in snap:
        raise UplinkError("%s is not an uplink snapshot of version %d" % (path, SNAPSHOT_VERSION))
    return snap


def dhcp_clients(dev, proc="/proc"):
    """DHCP client processes of this network namespace whose command line names ``dev`` (``"PID NAME"``)."""
    try:
        own = os.readlink(os.path.join(proc, "self", "ns", "net"))
    except OSError:
        own = None
    found = []
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        try:
            with open(os.path.join(proc, pid, "cmdline"), "rb") as handle:
                argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
            netns = os.readlink(os.path.join(proc, pid, "ns", "net"))
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) not in DHCP_CLIENTS or (own and netns != own):
            continue
        if any(a == dev or (".%s." % dev) in a or a.endswith("." + dev) for a in argv[1:]):
            found.append("%s %s" % (pid, os.path.basename(argv[0])))
    return found


def apply_batch(runner, lines, ip="ip"):
    """Run ``lines`` as one ``ip -batch -``; raise :class:`UplinkError` naming the failing line."""
    if not lines:
        return
    rc, out, err = runner.run([ip, "-batch", "-"], data="\n".join(lines) + "\n")
    if rc != 0:
        raise UplinkError("ip -batch failed (it stops at the first failing line): %s" % (err or out).strip())


def probe(runner, target, bridge, method="ping", timeout=5.0, ip="ip", ping="ping",
          clock=time.monotonic, sleep=time.sleep, backoff=False):
    """Whether ``target`` (``{"address", "family"}``) answers within ``timeout`` seconds.

    ``bridge`` is the interface the answer must come through (the bridge after a move, the uplink
    after a restore). ``ping``: an ICMP echo gets a reply (an IPv6 link-local address is pinged
    through ``bridge``). ``neigh``: the address answers ARP (IPv4) or neighbour
    solicitation (IPv6) on ``bridge``: the cached entry is dropped (unless permanent), one echo
    request triggers the resolution, and the entry must come back with a link-layer address;
    this works where ICMP is filtered. With ``backoff`` the pause between attempts doubles (0.2 s up to
    8 s): the boot-time restore waits long for a gateway that comes up late. Returns ``(ok, detail)``.
    """
    address, family = target["address"], target["family"]
    link_local = family == 6 and ipaddress.ip_address(address).is_link_local
    argv = [ping, "-%d" % family, "-n", "-q", "-c", "1", "-W", "1"]
    if link_local:
        argv += ["-I", bridge]
    argv.append(address)
    deadline = clock() + max(float(timeout), 0.0)
    attempts = 0
    last = ""
    pause = 0.2
    while True:
        attempts += 1
        if method == "neigh":
            state = _neigh_state(runner, address, bridge, ip)
            if state is None or "PERMANENT" not in state and "NOARP" not in state:
                runner.run([ip, "neigh", "del", address, "dev", bridge])
            rc, out, err = runner.run(argv)
            poll_until = min(deadline, clock() + 1.5)
            while True:
                state = _neigh_state(runner, address, bridge, ip)
                if state and state.get("lladdr") and not {"FAILED", "INCOMPLETE"} & set(state.get("state", [])):
                    return True, "%s is at %s on %s (%s, attempt %d)" % (
                        address, state["lladdr"], bridge, "/".join(state.get("state", [])), attempts)
                if clock() >= poll_until:
                    break
                sleep(0.05)
            last = "no link-layer answer from %s on %s" % (address, bridge)
        else:
            rc, out, err = runner.run(argv)
            if rc == 0:
                return True, "%s answered ping (attempt %d)" % (address, attempts)
            last = (err or out or "").strip().splitlines()[-1:] or ["ping rc=%d" % rc]
            last = "%s did not answer ping: %s" % (address, last[0])
        if clock() >= deadline:
            return False, "%s; %d attempt(s) in %.1f s" % (last, attempts, float(timeout))
        sleep(min(pause, max(deadline - clock(), 0.0)))
        if backoff:
            pause = min(pause * 2, 8.0)


def _neigh_state(runner, address, bridge, ip):
    rc, out, _err = runner.run([ip, "-json", "neigh", "show", "to", address, "dev", bridge])
    if rc != 0 or not (out or "").strip():
        return None
    try:
        entries = json.loads(out)
    except ValueError:
        return None
    return entries[0] if entries else None


def check_all(runner, targets, bridge, method="ping", timeout=5.0, **kw):
    """Probe every target (they share one deadline); ``(all ok, [{"address", "ok", "detail"}])``."""
    if method not in CHECK_METHODS:
        raise UplinkError("check method %r is not one of %s" % (method, ", ".join(CHECK_METHODS)))
    clock = kw.get("clock", time.monotonic)
    deadline = clock() + float(timeout)
    results = []
    for target in targets:
        ok, detail = probe(runner, target, bridge, method, max(deadline - clock(), 0.0), **kw)
        results.append({"address": target["address"], "ok": ok, "detail": detail, "method": method})
    return all(r["ok"] for r in results), results


def _transaction(runner, before, lines, done, revert, reverted, targets, via, method, check_timeout, confirm, ip,
                 backoff=False):
    """Apply ``lines``; verify ``done(after) == []``; probe ``targets`` through ``via``; ``confirm()``;
    on any failure apply ``revert(now)`` and verify ``reverted(final) == []``."""
    outcome = {"changed": True, "commands": list(lines), "checked": [], "rolled_back": False,
               "rollback_commands": [], "error": None}
    try:
        apply_batch(runner, lines, ip)
        after = read_snapshot(runner, before["bridge"], before["uplink"], ip)
        left = done(after)
        if left:
            raise UplinkError("the batch ran but these steps are still to do: %s" % "; ".join(left))
        if targets:
            ok, outcome["checked"] = check_all(runner, targets, via, method, check_timeout, ip=ip, backoff=backoff)
            if not ok:
                raise UplinkError("reachability check failed: %s"
                                  % "; ".join(r["detail"] for r in outcome["checked"] if not r["ok"]))
        if confirm is not None:
            ok, why = confirm()
            if not ok:
                raise UplinkError(why)
        outcome["after"] = after
        return outcome
    except UplinkError as exc:
        outcome["error"] = str(exc)
    except Exception as exc:  # a bug must not leave the host half-moved either
        outcome["error"] = "unexpected %s: %s" % (type(exc).__name__, exc)
    # roll back
    outcome["rolled_back"] = True
    try:
        now = read_snapshot(runner, before["bridge"], before["uplink"], ip)
        back = revert(now)
        outcome["rollback_commands"] = back
        apply_batch(runner, back, ip)
        final = read_snapshot(runner, before["bridge"], before["uplink"], ip)
        outcome["after"] = final
        left = reverted(final)
        if left:
            outcome["error"] += "; the rollback left these steps undone: %s" % "; ".join(left)
            outcome["rollback_complete"] = False
        else:
            outcome["rollback_complete"] = True
    except UplinkError as exc:
        outcome["error"] += "; the rollback failed too: %s" % exc
        outcome["rollback_complete"] = False
    return outcome


def move(runner, bridge, uplink, check_addresses=None, method="ping", check_timeout=5.0, confirm=None,
         before=None, ip="ip", backoff=False):
    """Move ``uplink`` into ``bridge``, check, confirm, or roll back to the state before.

    :param runner: object with ``run(argv, data=None) -> (rc, out, err)``.
    :param check_addresses: addresses that must answer after the move; default the default
        gateway(s) through the uplink (no probe at all if there are none).
    :param method: ``ping`` or ``neigh`` (ARP/NDP), see :func:`probe`.
    :param confirm: ``None``, or a callable run after a successful check that returns
        ``(confirmed, why_not)``; a refusal rolls back (the controller's confirmation).
    :param before: the snapshot to start from (read now if ``None``).
    :param backoff: the check's attempts are spaced further and further apart (see :func:`probe`).
    :returns: dict ``changed, commands, checked, rolled_back, rollback_commands, error,
        rollback_complete (after a rollback), before, after``; ``error`` is ``None`` on success.
    """
    before = before or read_snapshot(runner, bridge, uplink, ip)
    lines = plan_move(before)
    if not lines:
        return {"changed": False, "commands": [], "checked": [], "rolled_back": False, "rollback_commands": [],
                "error": None, "before": before, "after": before}
    targets = check_targets(before, check_addresses)
    outcome = _transaction(runner, before, lines, plan_move, lambda now: plan_restore(before, now),
                           lambda now: plan_restore(before, now), targets, bridge, method, check_timeout, confirm, ip,
                           backoff)
    outcome["before"] = before
    return outcome


def restore(runner, saved, check_addresses=None, method="ping", check_timeout=5.0, confirm=None, ip="ip"):
    """Bring the uplink back to ``saved`` (the snapshot from before the move); check, confirm, or move
    it into the bridge again. Same result as :func:`move`."""
    before = read_snapshot(runner, saved["bridge"], saved["uplink"], ip)
    lines = plan_restore(saved, before)
    if not lines:
        return {"changed": False, "commands": [], "checked": [], "rolled_back": False, "rollback_commands": [],
                "error": None, "before": before, "after": before}
    targets = check_targets(saved, check_addresses)
    outcome = _transaction(runner, before, lines, lambda now: plan_restore(saved, now),
                           plan_move, plan_move, targets, saved["uplink"], method, check_timeout, confirm, ip)
    outcome["before"] = before
    return outcome
