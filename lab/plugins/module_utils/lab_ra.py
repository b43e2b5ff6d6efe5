# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The lab router's router advertisements (option router_advertisements of podnet.lab.lab_topology): the sender
started in the router's namespace and tracked by its pid file, reloaded with SIGHUP, and the wait until every node
holds the default route it advertises. The program and its settings are module_utils/lab_services.py's.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

from ansible_collections.podnet.lab.plugins.module_utils.lab_machine import (
    ensure_dir,
    log_tail,
    pid_from_file,
    write_if_changed,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_services import (
    RA_SCRIPT,
    ra_files,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import LabError


def ra_pid(spec, nsid=None):
    """PID of the running RA sender (its program in the command line)."""
    return pid_from_file(spec["pid_file"], spec["program"], nsid)


def stop_ra(lab, spec):
    """Stop the RA sender by the pid in its pid file (only if that pid is this sender)."""
    pid = ra_pid(spec)
    if pid is None:
        return []
    lab.note("stop the router advertisement sender (pid %d)" % pid)
    procs = [{"pid": pid, "comm": "python3", "netns": None, "reason": "ra sender"}]
    lab.kill(procs)
    return procs


def nodes_with_ra_route(lab, topo):
    """Nodes whose kernel holds an IPv6 default route learned from router advertisements."""
    found = []
    for node in topo["node_names"]:
        rc, out, _err = lab.run([lab.ip, "-n", node, "-6", "-j", "route", "show", "default", "proto", "ra"])
        if rc == 0 and out.strip() not in ("", "[]"):
            found.append(node)
    return found


def ra_reconcile(lab, topo, before):
    """The router's RA sender runs with the lab's settings, and every node holds its RA default route."""
    spec = ra_files(topo)
    ensure_dir(lab, spec["dir"], 0o755)
    program_changed = write_if_changed(lab, spec["program"], RA_SCRIPT, 0o644, before)
    settings_changed = write_if_changed(lab, spec["settings"], spec["settings_text"], 0o644, before)
    pid = ra_pid(spec, lab.netns_id(topo["router"]))
    if pid is not None and program_changed:
        stop_ra(lab, spec)
        pid = None
    if pid is not None:
        before.add("router advertisements %s eth0" % topo["router"])
        if settings_changed and not lab.check:
            lab.note("send SIGHUP to the router advertisement sender (pid %d): new settings" % pid)
            os.kill(pid, signal.SIGHUP)
    else:
        lab.note("start the router advertisement sender in %s: %s" % (topo["router"], " ".join(spec["argv"])))
        if not lab.check:
            if os.path.lexists(spec["pid_file"]):
                os.unlink(spec["pid_file"])
            with open(spec["log"], "ab") as log:
                os.set_inheritable(log.fileno(), True)
                proc_pid = os.fork()
                if proc_pid == 0:  # pragma: no cover - the child
                    try:
                        os.setsid()
                        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                        os.dup2(log.fileno(), 1)
                        os.dup2(log.fileno(), 2)
                        os.execvp(spec["argv"][0], spec["argv"])
                    finally:
                        os._exit(127)
            deadline = time.monotonic() + 35
            while ra_pid(spec) is None:
                done, _status = os.waitpid(proc_pid, os.WNOHANG)
                if done or time.monotonic() > deadline:
                    raise LabError("the router advertisement sender did not start; its log %s says:\n%s"
                                   % (spec["log"], log_tail(spec["log"])))
                time.sleep(0.05)
    if lab.check or topo["ra_lifetime"] == 0:
        return
    # every node learns its default route from the advertisements before the lab is ready
    deadline = time.monotonic() + 20
    missing = [n for n in topo["node_names"] if n not in nodes_with_ra_route(lab, topo)]
    hup_at = time.monotonic() + 3
    while missing:
        if time.monotonic() > deadline:
            raise LabError("nodes %s hold no IPv6 default route learned from the router's advertisements after 20 s; "
                           "the sender's log %s says:\n%s" % (", ".join(missing), spec["log"], log_tail(spec["log"])))
        if time.monotonic() > hup_at:
            pid = ra_pid(spec)
            if pid is not None:
                os.kill(pid, signal.SIGHUP)  # advertise again at once
            hup_at = time.monotonic() + 3
        time.sleep(0.1)
        missing = [n for n in missing if n not in nodes_with_ra_route(lab, topo)]


def ra_remove(lab, topo, before):
    """Stop the RA sender (by pid) and remove its files."""
    spec = ra_files(topo)
    procs = stop_ra(lab, spec)
    if procs:
        before.add("router advertisements %s eth0" % topo["router"])
    if os.path.isdir(spec["dir"]):
        before.add("directory %s" % spec["dir"])
        lab.note("remove %s" % spec["dir"])
        if not lab.check:
            shutil.rmtree(spec["dir"])
    return procs
