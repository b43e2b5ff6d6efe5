# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The lab's SSH service (option ssh of podnet.lab.lab_topology): keys, each node's sshd started in the node's
own view and stopped by its pid file, the controller namespace removed with it. The files and texts are
module_utils/lab_services.py's.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import time

from ansible_collections.podnet.lab.plugins.module_utils.lab_machine import (
    ensure_dir,
    pid_from_file,
    write_if_changed,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_services import (
    PROXY_SCRIPT,
    SSH_DIR,
    SSH_KEY,
    SSH_PROXY,
    SSHD,
    SSHD_DIR,
    sshd_files,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import LabError
from ansible_collections.podnet.lab.plugins.module_utils.netns import (
    build_argv,
    join,
)


def _listening(pid, port=22):
    """True when the network namespace of ``pid`` has a TCP socket listening on ``port``."""
    suffix = ":%04X" % port
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as fh:
                for line in list(fh)[1:]:
                    fields = line.split()
                    if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == "0A":
                        return True
        except OSError:
            continue
    return False


def sshd_pid(spec, nsid=None):
    """PID of a node's running sshd (its config file in the command line)."""
    return pid_from_file(spec["pid_file"], spec["config_path"], nsid)


def _keygen(lab, keygen, path, comment):
    for old in (path, path + ".pub"):
        if os.path.lexists(old):
            lab.note("remove %s" % old)
            if not lab.check:
                os.unlink(old)
    lab.run_change([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])


def start_sshd(lab, topo, node, spec):
    """Start the node's sshd inside the node's view (the netns connection's wrapper); wait until it listens."""
    # The sessions' home directory is the node's own, as on a host of its own: over the machine's /root,
    # root's login shell (bash, started by sshd) would run the machine's ~/.bashrc before every command
    # (a pyenv there rehashes into /root/.pyenv, and waits 60 s on a stale lock of that). The bind mount
    # lives in the wrapper's private mount namespace: only this sshd and its sessions see it.
    command = "mount --bind %s %s && exec %s -f %s -E %s" % (
        shlex.quote(spec["home"]), shlex.quote(pwd.getpwuid(0).pw_dir), SSHD, shlex.quote(spec["config_path"]),
        shlex.quote(spec["log"]))
    argv = build_argv(node, command, root=topo["nodes"][node]["root"], hostname=node)
    lab.run_change(argv, text="start sshd of %s in its view (listening on %s): %s"
                   % (node, ", ".join(spec["listen"]), join(argv)))
    if lab.check:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = sshd_pid(spec)
        if pid is not None and _listening(pid):
            return
        time.sleep(0.05)
    try:
        with open(spec["log"]) as fh:
            log = fh.read()[-2000:]
    except OSError:
        log = "(no log)"
    raise LabError("the sshd of %s does not listen on %s after 10 s; its log %s says:\n%s"
                   % (node, ", ".join(spec["listen"]), spec["log"], log))


def stop_sshd(lab, node, spec):
    """Stop the node's sshd by the pid in its pid file (only if that pid is this sshd)."""
    pid = sshd_pid(spec)
    if pid is None:
        return False
    lab.note("stop sshd of %s (pid %d)" % (node, pid))
    lab.kill([{"pid": pid}])
    return True


def ssh_reconcile(lab, topo, before):
    """Keys, configuration and a running sshd for every node (option ssh)."""
    if not os.access(SSHD, os.X_OK):
        raise LabError("ssh: %s is missing; install the Debian package openssh-server" % SSHD)
    keygen = lab.module.get_bin_path("ssh-keygen")
    if keygen is None:
        raise LabError("ssh: ssh-keygen is missing; install the Debian package openssh-client")
    keydir = "%s/%s" % (topo["root"], SSH_DIR)
    key = "%s/%s" % (keydir, SSH_KEY)
    ensure_dir(lab, keydir, 0o700)
    if os.path.isfile(key) and os.path.isfile(key + ".pub"):
        before.add("ssh key %s" % key)
    else:
        _keygen(lab, keygen, key, "podnet lab %s controller" % topo["name"])
    if not lab.check:
        with open(key + ".pub") as fh:
            write_if_changed(lab, "%s/authorized_keys" % keydir, fh.read(), 0o644, before)
    write_if_changed(lab, "%s/%s" % (keydir, SSH_PROXY), PROXY_SCRIPT, 0o644, before)
    for node, spec in sshd_files(topo).items():
        ensure_dir(lab, spec["dir"], 0o700)
        ensure_dir(lab, spec["privsep_dir"], 0o755)  # /run/sshd in the node's view
        ensure_dir(lab, spec["home"], 0o700)  # root's home directory in the node's SSH sessions
        fresh_key = False
        if os.path.isfile(spec["host_key"]):
            before.add("ssh host key %s" % spec["host_key"])
        else:
            _keygen(lab, keygen, spec["host_key"], node)
            fresh_key = True
        changed = write_if_changed(lab, spec["config_path"], spec["config"], 0o600, before)
        running = sshd_pid(spec, lab.netns_id(node)) is not None
        if running and (changed or fresh_key):
            stop_sshd(lab, node, spec)
            running = False
        if running:
            before.add("sshd %s listening %s" % (node, " ".join(spec["listen"])))
        else:
            start_sshd(lab, topo, node, spec)


def ssh_facts(topo):
    facts = set()
    if not topo["ssh"]:
        return facts
    facts.add("ssh key %s/%s/%s" % (topo["root"], SSH_DIR, SSH_KEY))
    facts.add("file %s/%s/authorized_keys" % (topo["root"], SSH_DIR))
    facts.add("file %s/%s/%s" % (topo["root"], SSH_DIR, SSH_PROXY))
    for node, spec in sshd_files(topo).items():
        facts.add("ssh host key %s" % spec["host_key"])
        facts.add("file %s" % spec["config_path"])
        facts.add("sshd %s listening %s" % (node, " ".join(spec["listen"])))
    return facts


def ssh_remove(lab, topo, nodes, before):
    """Stop every node's sshd (by pid), remove the SSH files and the controller namespace."""
    for node in nodes:
        spec = {"pid_file": "%s/%s/%s/sshd.pid" % (topo["root"], node, SSHD_DIR),
                "config_path": "%s/%s/%s/sshd_config" % (topo["root"], node, SSHD_DIR)}
        if stop_sshd(lab, node, spec):
            before.add("sshd %s" % node)
        node_dir = "%s/%s/%s" % (topo["root"], node, SSHD_DIR)
        if os.path.isdir(node_dir):
            before.add("directory %s" % node_dir)
            lab.note("remove %s" % node_dir)
            if not lab.check:
                shutil.rmtree(node_dir)
    keydir = "%s/%s" % (topo["root"], SSH_DIR)
    if os.path.isdir(keydir):
        before.add("directory %s" % keydir)
        lab.note("remove %s" % keydir)
        if not lab.check:
            shutil.rmtree(keydir)
    ctl = topo["controller"]
    killed = []
    if lab.netns_state(ctl) != "missing":
        before.add("netns %s" % ctl)
        killed = lab.lab_processes([ctl], [])
        lab.kill(killed)
        lab.run_change([lab.ip, "netns", "delete", ctl])
    return killed
