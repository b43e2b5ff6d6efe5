# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The machine under the lab: the Lab class reads and changes lab namespaces through ``ip`` (every change
recorded, none made in check mode), finds the processes that belong to the lab and stops them; with the small
file and process helpers the other parts of podnet.lab.lab_topology share (pid files, atomic writes, logs).
"""

from __future__ import annotations

import json
import os
import signal
import time

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import spawn
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write
from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import (
    NETNS_DIR,
    LabError,
)


class Lab:
    """Reads and changes the lab through ``ip``; every change goes through :meth:`run_change`."""

    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.commands = []
        self.ip = module.get_bin_path("ip", required=True)
        self._nsfs_dev = os.stat("/proc/self/ns/net").st_dev

    # -- low level ---------------------------------------------------------

    def run(self, argv, data=None):
        return spawn(argv, data)

    def must(self, argv):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise LabError("%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()))
        return out

    def run_change(self, argv, text=None):
        """Record a change; run it unless in check mode."""
        if text is None:
            text = " ".join(["ip"] + list(argv[1:]) if argv[0] == self.ip else argv)
        self.commands.append(text)
        if not self.check:
            self.must(argv)

    def note(self, text):
        self.commands.append(text)

    def delete_link(self, ns, name):
        """Delete a link. One gone by then is no error: the peer of a veth whose namespace was just deleted goes
        when the kernel has torn that namespace down, which it does asynchronously (a shrinking lab read the
        switch port as there, then failed to delete it: 'Cannot find device')."""
        argv = [self.ip, "-n", ns, "link", "delete", name]
        self.commands.append(" ".join(["ip"] + argv[1:]))
        if self.check:
            return
        rc, out, err = self.run(argv)
        if rc != 0 and self.link_exists(ns, name):
            raise LabError("%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()))

    # -- namespaces ----------------------------------------------------------

    def netns_state(self, ns):
        """'ok', 'missing' or 'stale' (a file in /run/netns that is not a mounted namespace)."""
        path = os.path.join(NETNS_DIR, ns)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return "missing"
        return "ok" if st.st_dev == self._nsfs_dev else "stale"

    def netns_id(self, ns):
        try:
            st = os.stat(os.path.join(NETNS_DIR, ns))
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if st.st_dev == self._nsfs_dev else None

    def ip_json(self, ns, *args):
        out = self.must([self.ip, "-n", ns, "-j"] + list(args))
        out = out.strip()
        return json.loads(out) if out else []

    def read_ns(self, ns, families):
        """links (with addresses) and main-table routes of one existing namespace."""
        links = {}
        for entry in self.ip_json(ns, "-d", "addr", "show"):
            kind = (entry.get("linkinfo") or {}).get("info_kind")
            if entry.get("link_type") == "loopback":
                kind = "loopback"
            addrs = sorted(
                "%s/%s" % (a["local"], a["prefixlen"])
                for a in entry.get("addr_info", [])
                if a.get("scope") == "global" and a.get("family") in ("inet", "inet6")
            )
            links[entry["ifname"]] = {
                "ifindex": entry.get("ifindex"),
                "link_index": entry.get("link_index"),
                "peer_elsewhere": "link_netnsid" in entry,
                "kind": kind,
                "master": entry.get("master"),
                "alias": entry.get("ifalias"),
                "up": "UP" in entry.get("flags", []),
                "addrs": addrs,
            }
        routes = []
        for family in families:
            for rt in self.ip_json(ns, "-%d" % family, "route", "show"):
                routes.append({
                    "family": family,
                    "dst": rt.get("dst"),
                    "via": rt.get("gateway"),
                    "dev": rt.get("dev"),
                    "protocol": rt.get("protocol", "boot"),
                    "type": rt.get("type", "unicast"),
                })
        return {"links": links, "routes": routes}

    def link_exists(self, ns, name):
        rc, _out, _err = self.run([self.ip, "-n", ns, "link", "show", "dev", name])
        return rc == 0

    def read_sysctls(self, ns, keys):
        if not keys:
            return {}
        paths = ["/proc/sys/" + k.replace(".", "/") for k in keys]
        rc, out, _err = self.run([self.ip, "netns", "exec", ns, "cat"] + paths)
        values = out.split("\n") if rc == 0 else []
        return {k: (values[i].strip() if i < len(values) else None) for i, k in enumerate(keys)}

    # -- processes -----------------------------------------------------------

    def lab_processes(self, namespaces, roots):
        """Processes whose net namespace is one of ``namespaces``, or whose mounts use an upper layer in ``roots``."""
        ids = {}
        for ns in namespaces:
            nid = self.netns_id(ns)
            if nid is not None:
                ids[nid] = ns
        markers = [("upperdir=%s/" % root).encode() for root in roots or ()]
        mount_cache = {}
        me = os.getpid()
        ancestors = set()
        pid = me
        while pid > 1:
            ancestors.add(pid)
            try:
                with open("/proc/%d/stat" % pid) as fh:
                    pid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid in ancestors or pid == 1:
                continue
            reason = netns = None
            try:
                st = os.stat("/proc/%d/ns/net" % pid)
                if (st.st_dev, st.st_ino) in ids:
                    reason, netns = "netns", ids[(st.st_dev, st.st_ino)]
                elif markers:
                    mst = os.stat("/proc/%d/ns/mnt" % pid)
                    key = (mst.st_dev, mst.st_ino)
                    if key not in mount_cache:
                        with open("/proc/%d/mountinfo" % pid, "rb") as fh:
                            table = fh.read()
                        mount_cache[key] = any(m in table for m in markers)
                    if mount_cache[key]:
                        reason = "mount"
                if reason is None:
                    continue
                with open("/proc/%d/comm" % pid) as fh:
                    comm = fh.read().strip()
            except OSError:
                continue  # gone, or a kernel thread without namespaces
            found.append({"pid": pid, "comm": comm, "netns": netns, "reason": reason})
        return found

    def kill(self, procs):
        if self.check or not procs:
            return
        for p in procs:
            try:
                os.kill(p["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        alive = still_running(procs, 3)
        for p in alive:
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        still_running(alive, 2)


def running(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def still_running(procs, seconds):
    """Those of ``procs`` still running after waiting up to ``seconds`` for them to end (polled every 50 ms)."""
    deadline = time.monotonic() + seconds
    alive = [p for p in procs if running(p["pid"])]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if running(p["pid"])]
    return alive


def pid_from_file(pid_file, marker, nsid=None):
    """PID of a running process from its pid file, checked against /proc: ``marker`` in its command line and,
    given ``nsid`` (device, inode), its network namespace. ``None`` when any of that does not hold."""
    try:
        with open(pid_file) as fh:
            pid = int(fh.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            cmdline = fh.read()
        st = os.stat("/proc/%d/ns/net" % pid)
    except (OSError, ValueError):
        return None
    if marker.encode() not in cmdline or not running(pid):
        return None
    if nsid is not None and (st.st_dev, st.st_ino) != nsid:
        return None
    return pid


def ensure_dir(lab, path, mode):
    if not os.path.isdir(path):
        lab.note("mkdir %s" % path)
        if not lab.check:
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chmod(path, mode)


def write_if_changed(lab, path, content, mode, before):
    try:
        with open(path) as fh:
            if fh.read() == content:
                before.add("file %s" % path)
                return False
    except OSError:
        pass
    lab.note("write %s" % path)
    if not lab.check:
        write_file(path, content)
        os.chmod(path, mode)
    return True


def log_tail(path):
    try:
        with open(path) as fh:
            return fh.read()[-2000:]
    except OSError:
        return "(no log)"


def write_file(path, content):
    atomic_write(path, content, mode=0o644, create_dirs=True)
