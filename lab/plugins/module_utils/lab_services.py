# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The lab's services as data: each node's sshd (option ssh) and the router's router advertisement sender
(option router_advertisements): their programs, configuration texts, paths and command lines.

Pure functions, standard library only. podnet.lab.lab_topology starts and stops the services
(module_utils/lab_ssh.py, module_utils/lab_ra.py); module_utils/lab_topology.py re-exports what its callers
name from here.
"""

from __future__ import annotations

NETNS_DIR = "/run/netns"
SSHD = "/usr/sbin/sshd"
SSH_DIR = "ssh"          # <root>/ssh: the controller's key pair and authorized_keys of every node
SSHD_DIR = "sshd"        # <root>/<node>/sshd: the node's sshd_config, host key, pid file and log
SSH_KEY = "id_ed25519"
SSH_PROXY = "proxy.py"   # <root>/ssh/proxy.py: ProxyCommand relay, run inside the controller namespace
# A stdin/stdout <-> TCP relay (what `nc HOST PORT` does), run by ssh as its ProxyCommand under
# `nsenter --net=/run/netns/<lab>-ctl`: the TCP connection to the node's sshd lives in the lab's
# controller namespace even when ssh (and Ansible) run in the machine's own namespace.
PROXY_SCRIPT = """\
# Written by podnet.lab.lab_topology: ssh ProxyCommand relay (stdin/stdout <-> TCP HOST PORT).
import os, select, socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
sock.settimeout(None)
open_in = True
while True:
    ready = select.select([sock] + ([0] if open_in else []), [], [])[0]
    if 0 in ready:
        data = os.read(0, 65536)
        if data:
            sock.sendall(data)
        else:
            open_in = False
            sock.shutdown(socket.SHUT_WR)
    if sock in ready:
        data = sock.recv(65536)
        if not data:
            break
        while data:
            data = data[os.write(1, data):]
"""
RA_DIR = "ra"            # <root>/<router>/ra: the RA sender's program, settings, pid file and log
RA_PROGRAM = "ra_sender.py"
RA_SETTINGS = "ra.json"
RA_PID = "ra.pid"
RA_LOG = "ra.log"
RA_INTERVAL = 10
RA_LIFETIME = 1800
# A router advertisement sender (ICMPv6 type 134, RFC 4861), run inside the router's namespace on its link to the
# nodes: from the link's link-local address once it is no longer tentative, hop limit 255, to all nodes (ff02::1),
# with a source link-layer address option and no prefix (the nodes keep their static addresses). It sends three at
# one-second spacing, then one every "interval" seconds and one at once for each router solicitation. SIGHUP
# re-reads the settings file and sends at once (router lifetime 0: the nodes drop the router as their default
# route); SIGTERM ends it. The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
RA_SCRIPT = """\
# Written by podnet.lab.lab_topology: router advertisements of the lab router.
# Usage: python3 ra_sender.py IFACE SETTINGS_JSON PID_FILE
import fcntl, json, os, select, signal, socket, struct, sys, time

iface, settings_path, pid_path = sys.argv[1], sys.argv[2], sys.argv[3]
index = socket.if_nametoindex(iface)


def link_local():
    with open("/proc/net/if_inet6") as fh:
        for line in fh:
            f = line.split()
            if f[5] == iface and int(f[3], 16) == 0x20 and not int(f[4], 16) & 0x40:  # link scope, not tentative
                return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(f[0]))
    return None


def settings():
    with open(settings_path) as fh:
        data = json.load(fh)
    return int(data.get("interval", 10)), int(data.get("lifetime", 1800))


deadline = time.monotonic() + 30
source = link_local()
while source is None:
    if time.monotonic() > deadline:
        sys.exit("no usable link-local address on %s after 30 s" % iface)
    time.sleep(0.1)
    source = link_local()
probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
mac = fcntl.ioctl(probe.fileno(), 0x8927, struct.pack("256s", iface.encode()[:15]))[18:24]  # SIOCGIFHWADDR
probe.close()
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
sock.bind((source, 0, 0, index))
with open(pid_path + ".tmp", "w") as fh:
    fh.write("%d\\n" % os.getpid())
os.replace(pid_path + ".tmp", pid_path)
state = {"reload": False}


def hup(_sig, _frame):
    state["reload"] = True


signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(0))
interval, lifetime = settings()


def send(reason):
    packet = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, lifetime, 0, 0) + struct.pack("!BB6s", 1, 1, mac)
    sock.sendto(packet, ("ff02::1", 0, 0, index))
    sys.stdout.write("%.3f RA from %s on %s, router lifetime %d (%s)\\n" % (time.time(), source, iface, lifetime,
                                                                         reason))
    sys.stdout.flush()


initial = 3
next_at = time.monotonic()
while True:
    if state["reload"]:
        state["reload"] = False
        interval, lifetime = settings()
        initial, next_at = 3, time.monotonic()
    # short waits: Python resumes a select that a signal interrupted, so SIGHUP is seen within 0.2 s
    ready = select.select([sock], [], [], min(0.2, max(0.0, next_at - time.monotonic())))[0]
    if ready:
        data, _addr = sock.recvfrom(2048)
        if data[:1] == b"\\x85":  # a router solicitation: answer at once
            send("solicited")
        continue
    if state["reload"] or time.monotonic() < next_at:
        continue
    send("periodic" if not initial else "initial")
    initial = max(0, initial - 1)
    next_at = time.monotonic() + (1 if initial else interval)
"""


# --------------------------------------------------------------------------
# SSH (option ssh): an sshd inside every node's own view, a controller namespace on the switch


def ssh_host_vars(topo, node):
    """Inventory variables that make Ansible reach ``node`` over SSH through the controller namespace.

    The TCP connection is always made inside ``<lab>-ctl`` (a ProxyCommand relay entered with
    nsenter), so the inventory works from the machine's own namespace too, without touching it.
    """
    proxy = "ProxyCommand=nsenter --net=%s/%s -- /usr/bin/python3 %s/%s/%s %%h %%p" % (
        NETNS_DIR, topo["controller"], topo["root"], SSH_DIR, SSH_PROXY)
    return {
        "ansible_connection": "ssh",
        "ansible_host": node["ipv4"],
        "ansible_user": "root",
        "ansible_ssh_private_key_file": topo["controller_info"]["key"],
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
                                   "-o '%s'" % proxy,
        # The ControlPersist sockets of this lab's own: their names come from address, port and user, which
        # another lab on the same subnet shares, and ssh would reuse that lab's master (its own nodes).
        "ansible_control_path_dir": "%s/%s/cp" % (topo["root"], SSH_DIR),
    }


def sshd_files(topo):
    """Per node: paths and the sshd_config text of its sshd (all under the lab root)."""
    out = {}
    keys = "%s/%s" % (topo["root"], SSH_DIR)
    for name in topo["node_names"]:
        node = topo["nodes"][name]
        base = "%s/%s" % (node["root"], SSHD_DIR)
        listen = ["%s:22" % node["ipv4"]] + (["[%s]:22" % node["ipv6"]] if node["ipv6"] else [])
        config = "".join(line + "\n" for line in [
            "# Written by podnet.lab.lab_topology: the sshd of lab node %s, started inside the node's" % name,
            "# own view (its network namespace and its /etc, /var/lib, /run overlays); stopped by its pid file.",
            "# Its sessions' /root is the node's own %s/home (bind-mounted in the sshd's private mount" % base,
            "# namespace): root's login shell runs none of the machine's start-up files (~/.bashrc).",
        ] + ["ListenAddress %s" % addr for addr in listen] + [
            "HostKey %s/ssh_host_ed25519_key" % base,
            "PidFile %s/sshd.pid" % base,
            "AuthorizedKeysFile %s/authorized_keys" % keys,
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The key files live under /var/tmp (mode 1777), which StrictModes refuses.
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "AcceptEnv LANG LC_*",
            "MaxStartups 200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
        ])
        out[name] = {
            "dir": base,
            "config": config,
            "config_path": "%s/sshd_config" % base,
            "host_key": "%s/ssh_host_ed25519_key" % base,
            "pid_file": "%s/sshd.pid" % base,
            "log": "%s/sshd.log" % base,
            "home": "%s/home" % base,
            "privsep_dir": "%s/upper/run/sshd" % node["root"],
            "listen": listen,
        }
    return out


# --------------------------------------------------------------------------
# router advertisements (option router_advertisements)


def ra_files(topo):
    """Paths, settings and the command line of the router's RA sender (all under the router's lab directory)."""
    base = "%s/%s" % (topo["router_info"]["root"], RA_DIR)
    program = "%s/%s" % (base, RA_PROGRAM)
    settings = "%s/%s" % (base, RA_SETTINGS)
    pid_file = "%s/%s" % (base, RA_PID)
    return {
        "dir": base,
        "program": program,
        "settings": settings,
        "settings_text": '{"interval": %d, "lifetime": %d}\n' % (topo["ra_interval"], topo["ra_lifetime"]),
        "pid_file": pid_file,
        "log": "%s/%s" % (base, RA_LOG),
        "argv": ["nsenter", "--net=%s/%s" % (NETNS_DIR, topo["router"]), "--", "/usr/bin/python3", program, "eth0",
                 settings, pid_file],
    }
