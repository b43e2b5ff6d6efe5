# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The boot path: ``podnet-restore`` (run by the boot unit and the Docker drop-in) re-applies the kernel state of
the node's record, part by part, with each part's ``restore`` (engine.parts), under the node lock.

Standard library only (Python 3.8+): the node module installs this very file in ``<lib_dir>/lib``.
"""

from __future__ import annotations

import json
import sys
import time

from ansible_collections.podnet.cluster.plugins.module_utils.engine.lock import node_lock
from ansible_collections.podnet.cluster.plugins.module_utils.engine.plan import short
from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts import PARTS
from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts.overlay import devices as overlay_devices
from ansible_collections.podnet.cluster.plugins.module_utils.engine.record import check_document, read_record
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, ProcessRunner


class RestoreReport(object):
    """What a restore did, part by part: changes, failures (in order), warnings."""

    def __init__(self):
        self.changes = {}
        self.failed = {}
        self.warnings = []

    @property
    def changed(self):
        return bool(self.changes)


class RestoreContext(object):
    """What the parts' ``restore`` share: the runner, the record and its document, ``check``, ``wait``."""

    def __init__(self, runner, record, check=False, wait=0):
        self.runner, self.record, self.check, self.wait = runner, record, check, wait
        self.doc = record["document"]

    def overlay_devices(self):
        return overlay_devices(self.doc)


def restore_parts(runner, record, check=False, wait=0):
    """[(name, function)] of the restore, in the order of engine.parts: the bridge and its gateways first (Docker
    needs the bridge), then forwarding, the chains, the routes and the fabric's part (the overlay of vxlan, the
    uplink of l2_bridge). A function returns (change, warnings) or raises EngineError (``retry`` in its details:
    worth another try later at boot)."""
    rctx = RestoreContext(runner, record, check, wait)
    out = []
    for part in PARTS:
        if hasattr(part, "restore"):
            out.extend(part.restore(rctx))
    return out


def restore(runner, path, check=False, wait=0, log=None, clock=time.monotonic, sleep=time.sleep):
    """Re-apply the kernel state of the record at ``path``, part by part (see :func:`restore_parts`).

    Best effort: a part that fails is reported (``log``, one line each) and the parts after it still run. Parts
    whose failure may pass at boot (an address not on a link yet, a gateway not on-link yet, an uplink that has no
    address yet) are retried with backoff until ``wait`` seconds have passed. Returns a :class:`RestoreReport`;
    EngineError only when the record cannot be read.
    """
    log = log or (lambda line: None)
    record = read_record(path)
    if record is None:
        raise EngineError("no record at %s: this node was never configured by podnet.cluster" % path)
    check_document(record["document"])
    report = RestoreReport()
    pending = restore_parts(runner, record, check, wait)
    deadline = clock() + max(float(wait), 0.0)
    delay = 0.5
    while True:
        again = []
        for name, func in pending:
            try:
                change, warnings = func()
            except EngineError as exc:
                report.failed[name] = exc.msg
                log("podnet-restore: %s: %s" % (name, exc.msg))
                partial = exc.details.get("change")
                if partial and partial.get("changed"):
                    report.changes[name] = short(partial)
                if exc.details.get("retry"):
                    again.append((name, func))
                continue
            report.failed.pop(name, None)
            for warning in warnings:
                report.warnings.append(warning)
                log("podnet-restore: warning: %s" % warning)
            if change.get("changed"):
                report.changes[change.pop("_name", name)] = short(change)
        if not again or check or clock() + delay > deadline:
            break
        log("podnet-restore: retrying %s in %.1f s" % (", ".join(n for n, _f in again), delay))
        sleep(delay)
        delay = min(delay * 2, 16.0)
        pending = again
    return report


def main(argv):
    """``podnet-restore [--check] [--wait SECONDS] [--lock-timeout SECONDS] RECORD``.

    Exit status 0: every part is as the record says; 1: a part failed (each named on stderr; the others were
    restored), or the record cannot be read, or another run holds the node lock; 2: usage.
    """
    args = list(argv)
    check, wait, lock_timeout, rest = False, 0.0, 600.0, []
    try:
        while args:
            arg = args.pop(0)
            if arg == "--check":
                check = True
            elif arg in ("--wait", "--lock-timeout"):
                value = float(args.pop(0))
                if value < 0:
                    raise ValueError(arg)
                if arg == "--wait":
                    wait = value
                else:
                    lock_timeout = value
            else:
                rest.append(arg)
    except (IndexError, ValueError):
        rest = []
    if len(rest) != 1:
        sys.stderr.write("usage: podnet-restore [--check] [--wait SECONDS] [--lock-timeout SECONDS] RECORD\n")
        return 2

    def log(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    runner = ProcessRunner(check_mode=check)
    try:
        if check:
            report = restore(runner, rest[0], check, wait, log)
        else:
            with node_lock(timeout=lock_timeout):
                report = restore(runner, rest[0], check, wait, log)
    except EngineError as exc:
        log("podnet-restore: %s" % exc.msg)
        return 1
    for name, change in sorted(report.changes.items()):
        sys.stdout.write("%s %s: %s\n" % ("would change" if check else "changed", name, json.dumps(change)))
    if report.failed:
        log("podnet-restore: %d part(s) failed: %s; every other part was %s"
            % (len(report.failed), ", ".join(report.failed), "checked" if check else "restored"))
        return 1
    if not report.changed:
        sys.stdout.write("podnet-restore: nothing to do, the node matches %s\n" % rest[0])
    return 0
