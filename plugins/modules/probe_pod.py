#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Module podnet.cluster.probe_pod: a throw-away probe pod (or node-side probe server) for verify."""

from __future__ import annotations

DOCUMENTATION = r"""
module: probe_pod
short_description: Start or remove a probe pod (or a node-side probe server) for the verify playbook
version_added: 0.1.0
author: podnet.cluster maintainers (!UNKNOWN)
description:
  - Starts a small TCP server speaking the podnet probe protocol (see C(podnet.cluster.probe)) as a detached
    process (new session, standard streams to a log file), and, for a pod, gives it its own network
    namespace and wires that namespace to the node's pod network like a real pod.
  - The server listens only on its probe addresses (a pod's own global addresses once it is wired; for
    O(mode=host) the addresses of O(bind)), never on every address of the host; it handles at most
    O(max_threads) connections at once and exits on its own after O(lifetime) seconds, so that an
    interrupted run leaves no server behind for long (the next run, or O(state=absent), removes the rest of
    a pod whose server is gone - its CNI lease and its record).
  - "O(mode=cni): the server is started under C(unshare --net), so its network namespace lives exactly as
    long as the process; the namespace is referred to as C(/proc/PID/ns/net), never as a named namespace
    under C(/run/netns) (on lab nodes C(/run) is private to the node). The plugins of the CNI configuration
    list O(conflist) are then run in order with C(CNI_COMMAND=ADD), C(CNI_NETNS=/proc/PID/ns/net),
    C(CNI_IFNAME=)O(ifname) and C(CNI_CONTAINERID=)O(name); each plugin gets its own entry of the list with
    the list's C(cniVersion) and C(name) added and the previous plugin's result as C(prevResult), as a
    container runtime does (a conflist is not a plugin configuration)."
  - "O(mode=veth), for nodes without CNI: a veth pair, one end (named C(pdv) + a hash of O(name)) added to
    O(bridge), the other moved into the pod as O(ifname) with O(addresses) and default routes via
    O(gateways)."
  - "O(mode=host): only the server, in the node's own network namespace, listening on O(bind) (the node's
    node IPs), so that pods can probe the node."
  - What was made (PID and start time of the server, the CNI configuration and result, the veth name) is
    recorded in C(<state_dir>/<name>.json). O(state=absent) undoes it from that record, in reverse - CNI
    C(DEL) for every plugin that was added (with the stored result as C(prevResult)), the veth deleted, the
    process killed by its recorded PID (only if that PID still runs this probe server with the recorded
    start time). Partial leftovers (a dead process, a missing namespace, a veth without record) are
    tolerated; both states are idempotent.
  - O(state=present) on a pod that is recorded, running, configured the same and with at least half of its
    O(lifetime) left is left alone (not changed); a stale, different or ageing one is removed and made
    again.
  - Target side, Python 3.8 or later (the oldest target Python of ansible-core 2.19; tested), standard
    library, root. Needs C(unshare) and C(nsenter) (util-linux) and C(ip) (iproute2).
options:
  name:
    description:
      - Name of the pod or server; the CNI container ID, the server's name in probe answers and the name of
        the record. Letters, digits, C(.), C(_), C(-); at most 63 characters.
      - One of O(name) and O(pods) is required.
    type: str
  pods:
    version_added: 0.2.0
    description:
      - Several pods or servers in one call, made (or removed) in list order; each item gives its own
        O(name), O(mode), O(bind), O(addresses) and O(gateways), the other options apply to all of them.
        The result lists each one's result in RV(pods). The first that fails stops the call (the ones made
        before it stay, recorded, for O(state=absent) to remove).
    type: list
    elements: dict
    suboptions:
      name:
        description: As O(name).
        type: str
        required: true
      mode:
        description: As O(mode).
        type: str
        choices: [cni, veth, host]
      bind:
        description: As O(bind).
        type: list
        elements: str
        default: []
      addresses:
        description: As O(addresses).
        type: list
        elements: str
        default: []
      gateways:
        description: As O(gateways).
        type: list
        elements: str
        default: []
  state:
    description: Whether the probe pod should exist.
    type: str
    choices: [present, absent]
    default: present
  mode:
    description:
      - How the pod is made (see the description). Required with O(state=present); O(state=absent) uses the
        recorded mode.
    type: str
    choices: [cni, veth, host]
  port:
    description: TCP port the server listens on, on its probe addresses only.
    type: int
    default: 47300
  bind:
    version_added: 0.2.0
    description:
      - The addresses the server of O(mode=host) listens on (one socket each; wildcard addresses are
        refused). Required with O(mode=host); not allowed with the pod modes, whose server listens on the
        pod's own global addresses.
      - An IPv6 address still in duplicate address detection is waited for, up to 5 seconds.
    type: list
    elements: str
    default: []
  lifetime:
    version_added: 0.2.0
    description:
      - Seconds after its start at which the server exits on its own, whatever happens to the run that
        started it (C(0) - never). A pod's network namespace goes with its server.
    type: float
    default: 1800
  max_threads:
    version_added: 0.2.0
    description: Connections the server handles at once (one thread each); more wait in the listen backlog.
    type: int
    default: 32
  conflist:
    description: The CNI configuration list used with O(mode=cni).
    type: path
    default: /etc/cni/net.d/10-podnet.conflist
  cni_bin_dirs:
    description: Directories searched, in order, for the CNI plugin binaries (also passed as C(CNI_PATH)).
    type: list
    elements: path
    default: [/opt/cni/bin, /usr/lib/cni]
  ifname:
    description: Name of the pod's interface (C(CNI_IFNAME)).
    type: str
    default: eth0
  bridge:
    description: The node's pod bridge, for O(mode=veth).
    type: str
    default: cbr0
  addresses:
    description:
      - The pod's addresses with prefix length (C(10.244.1.254/24), C(fd00:10:244:1::ffff/64)), for
        O(mode=veth); required with it.
    type: list
    elements: str
    default: []
  gateways:
    description: Default gateways of the pod (one per family), for O(mode=veth); usually the bridge addresses.
    type: list
    elements: str
    default: []
  state_dir:
    description:
      - Directory of the records, the server script (C(podnet_probe.py)) and the servers' logs. Created
        C(0700); removed when its last record goes.
    type: path
    default: /run/podnet-verify
  timeout:
    description: Seconds to wait for the server to listen, and for each CNI plugin call (times 6).
    type: float
    default: 10
attributes:
  check_mode:
    support: full
    description: Reports what would be started or removed; starts, runs and kills nothing.
  diff_mode:
    support: full
    description: The probe pod's description (addresses, port, lifetime) before and after, only with C(--diff).
notes:
  - The pod is a process, not a container. It shares the node's file system and PID namespace; only its
    network namespace is its own. It is meant to live for the duration of one verify run.
  - Nothing is written to the CNI configuration directory; host-local leases live where the configuration
    says (C(ipam.dataDir), default C(/var/lib/cni/networks/<name>)) and are released by C(DEL).
seealso:
  - module: podnet.cluster.probe
"""

EXAMPLES = r"""
- name: A probe pod wired by the node's CNI configuration
  podnet.cluster.probe_pod:
    name: podnet-verify-node1
    mode: cni
    conflist: /etc/cni/net.d/10-podnet.conflist
  register: pod

- name: A probe pod on a node without CNI, on the bridge cbr0
  podnet.cluster.probe_pod:
    name: podnet-verify-node2
    mode: veth
    bridge: cbr0
    addresses: [10.244.1.254/24, "fd00:10:244:1:ffff:ffff:ffff:ffff/64"]
    gateways: [10.244.1.1, "fd00:10:244:1::1"]

- name: A probe server in the node's own network namespace, on the node's IP only, for at most 10 minutes
  podnet.cluster.probe_pod:
    name: podnet-verify-node-node1
    mode: host
    bind: [192.168.50.11]
    lifetime: 600

- name: A node's two probe pods and its probe server, in one call
  podnet.cluster.probe_pod:
    pods:
      - {name: podnet-verify-pod-node1, mode: cni}
      - {name: podnet-verify-peer-node1, mode: cni}
      - {name: podnet-verify-node-node1, mode: host, bind: [192.168.50.11]}
    conflist: /etc/cni/net.d/10-podnet.conflist

- name: Remove the pod (CNI DEL, veth removed, process killed)
  podnet.cluster.probe_pod:
    name: podnet-verify-node1
    state: absent
"""

RETURN = r"""
name:
  description: The pod's name.
  returned: always (with O(pods) - in each item of RV(pods))
  type: str
  sample: podnet-verify-node1
mode:
  description: How the pod was made (C(null) after O(state=absent) of an unknown pod).
  returned: always (with O(pods) - in each item of RV(pods))
  type: str
  sample: cni
pid:
  description: PID of the probe server (the process that holds the pod's network namespace).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: int
  sample: 4242
netns:
  description: The pod's network namespace file, C(/proc/PID/ns/net); C(null) for O(mode=host).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: str
  sample: /proc/4242/ns/net
port:
  description: The server's TCP port.
  returned: when present (with O(pods) - in each item of RV(pods))
  type: int
  sample: 47300
listening:
  description: The endpoints the server listens on, as it reported them once its sockets were bound.
  returned: when present (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: ["10.244.1.2:47300", "[fd00:10:244:1::2]:47300"]
lifetime:
  description: The server's lifetime in seconds (C(0) - none).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: float
  sample: 1800
expires:
  description: When the server exits on its own (seconds since the epoch; C(null) without a lifetime).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: float
  sample: 1767225600.0
addresses:
  description:
    - The pod's global addresses with prefix length, read from the pod's namespace (O(mode=host) - the
      node's global addresses).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: [10.244.1.2/24, "fd00:10:244:1::2/64"]
ips:
  description: The same addresses without prefix length.
  returned: when present (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: [10.244.1.2, "fd00:10:244:1::2"]
host_interface:
  description: The node-side end of the veth pair (O(mode=veth)).
  returned: when present and mode is veth
  type: str
  sample: pdv3f2a9c01b7e
cni_result:
  description: The result of the last CNI plugin's ADD (O(mode=cni)).
  returned: when present and mode is cni
  type: dict
state_file:
  description: The record of the pod.
  returned: always (with O(pods) - in each item of RV(pods))
  type: str
  sample: /run/podnet-verify/podnet-verify-node1.json
pods:
  description: With O(pods) - one result per pod, in list order, each with the keys above.
  returned: with pods
  type: list
  elements: dict
actions:
  description: What the module did, in order.
  returned: always (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: ["started the probe server (pid 4242) in a new network namespace", "CNI ADD bridge", "CNI ADD portmap"]
"""

import hashlib
import ipaddress
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, ModuleRunner
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, read_text
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import run_ip_json
from ansible_collections.podnet.cluster.plugins.module_utils.ifname import ifname_problem
from ansible_collections.podnet.cluster.plugins.module_utils.probe import (
    DEFAULT_LIFETIME,
    DEFAULT_MAX_THREADS,
    SCRIPT_NAME,
    normalize_address,
    own_source,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RECORD_VERSION = 1


class PodError(Exception):
    """A step failed; the message names the step and the reason."""


# --------------------------------------------------------------------------- #
# small helpers
# --------------------------------------------------------------------------- #

def host_interface_name(name):
    """The node-side veth name: stable, at most 15 characters, ours by construction."""
    return "pdv" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:11]


def proc_info(pid):
    """(state letter, start time in clock ticks, argv) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "r") as handle:
            stat = handle.read()
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19]), argv


def process_is_ours(record):
    """True when the recorded PID still runs this probe server, started at the recorded time."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    info = proc_info(pid)
    if info is None:
        return False
    state, start, argv = info
    if state in ("Z", "X"):
        return False
    if record.get("starttime") is not None and start != record["starttime"]:
        return False
    return any(a.endswith(SCRIPT_NAME) for a in argv) and record.get("name") in argv


def kill_process(record, actions):
    if not process_is_ours(record):
        return False
    pid = record["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not process_is_ours(record):
            actions.append("stopped the probe server (pid %d)" % pid)
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    actions.append("killed the probe server (pid %d)" % pid)
    return True


class Pod(object):
    """Everything the module does, on one node, for one pod name."""

    def __init__(self, module, params=None):
        self.module = module
        self.params = params if params is not None else module.params
        self.name = self.params["name"]
        self.state_dir = self.params["state_dir"]
        self.record_path = os.path.join(self.state_dir, "%s.json" % self.name)
        self.log_path = os.path.join(self.state_dir, "%s.log" % self.name)
        self.script_path = os.path.join(self.state_dir, SCRIPT_NAME)
        self.actions = []
        self.warnings = []
        self._bins = {}
        self._ready = None
        self._control = None

    # -- tools ------------------------------------------------------------

    def bin(self, name):
        if name not in self._bins:
            self._bins[name] = self.module.get_bin_path(name, required=True)
        return self._bins[name]

    def run(self, argv, data=None, check=True, timeout=60):
        try:
            proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout, check=False, env=dict(os.environ, LC_ALL="C"))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PodError("%s: %s" % (" ".join(argv), to_native(exc)))
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise PodError("%s failed (rc %d): %s" % (" ".join(argv), proc.returncode, (err or out).strip()))
        return proc.returncode, out, err

    def in_netns(self, netns, argv, **kwargs):
        return self.run([self.bin("nsenter"), "--net=%s" % netns, "--"] + argv, **kwargs)

    # -- record -----------------------------------------------------------

    def load(self):
        text = read_text(self.record_path)
        if text is None:
            return None
        try:
            record = json.loads(text)
        except ValueError:
            self.warnings.append("unreadable record %s ignored" % self.record_path)
            return {"name": self.name, "mode": None}
        return record if isinstance(record, dict) else {"name": self.name, "mode": None}

    def save(self, record):
        atomic_write(self.record_path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o600)

    def ensure_state_dir(self):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        source = own_source()
        if read_text(self.script_path) != source:
            atomic_write(self.script_path, source, mode=0o600)

    def cleanup_state_dir(self):
        for path in (self.record_path, self.log_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        try:
            left = [n for n in os.listdir(self.state_dir) if n.endswith(".json")]
        except FileNotFoundError:
            return
        if not left:
            try:
                os.unlink(self.script_path)
            except FileNotFoundError:
                pass
            try:
                os.rmdir(self.state_dir)
            except OSError:
                pass

    # -- the server -------------------------------------------------------

    def spawn_server(self, record):
        """Start the probe server detached; return once it waits for its addresses (a pod) or listens.

        A pod's server is started under ``unshare --net`` and told its addresses (those of the wired pod)
        later, on a control pipe (:meth:`bind_server`); a host server gets them (``bind``) at once.
        """
        own_netns = record["mode"] != "host"
        port = self.params["port"]
        argv = [sys.executable, self.script_path, "serve", "--name", self.name, "--port", str(port),
                "--lifetime", "%g" % self.params["lifetime"], "--max-threads", str(self.params["max_threads"])]
        read_fd, write_fd = os.pipe()
        argv += ["--ready-fd", str(write_fd)]
        pass_fds = [write_fd]
        control_read = control_write = None
        if own_netns:
            control_read, control_write = os.pipe()
            argv += ["--control-fd", str(control_read)]
            pass_fds.append(control_read)
            argv = [self.bin("unshare"), "--net", "--"] + argv
        else:
            for address in record["bind"]:
                argv += ["--bind", address]
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                                    pass_fds=tuple(pass_fds), start_new_session=True, close_fds=True)
        except OSError as exc:
            os.close(read_fd)
            if control_write is not None:
                os.close(control_write)
            raise PodError("cannot start the probe server: %s" % to_native(exc))
        finally:
            os.close(write_fd)
            if control_read is not None:
                os.close(control_read)
            log.close()
        # Popen would otherwise reap (and warn about) the still-running child at exit.
        proc.returncode = 0
        self._ready = (read_fd, [b""])
        self._control = control_write
        info = proc_info(proc.pid)
        record.update(pid=proc.pid, starttime=info[1] if info else None, created=time.time(),
                      netns="/proc/%d/ns/net" % proc.pid if own_netns else None)
        answer = self.ready_line()
        if own_netns:
            if not answer or not answer.get("waiting"):
                self.server_failed(record, answer)
            self.actions.append("started the probe server (pid %d) in a new network namespace" % proc.pid)
        else:
            self.server_listens(record, answer)

    def ready_line(self):
        """The next JSON line the server wrote on its ready pipe (None: nothing within the timeout)."""
        read_fd, buf = self._ready
        deadline = time.monotonic() + self.params["timeout"]
        while b"\n" not in buf[0]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _w, _x = select.select([read_fd], [], [], remaining)
            if not ready:
                break
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            buf[0] += chunk
        if b"\n" not in buf[0]:
            return None
        line, buf[0] = buf[0].split(b"\n", 1)
        try:
            answer = json.loads(line.decode("utf-8"))
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def close_pipes(self):
        if self._ready is not None:
            os.close(self._ready[0])
            self._ready = None
        if self._control is not None:
            os.close(self._control)
            self._control = None

    def server_failed(self, record, answer):
        reason = (answer or {}).get("error")
        if process_is_ours(record):
            try:
                os.kill(record["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.close_pipes()
        log_text = (read_text(self.log_path) or "").strip()[-2000:]
        raise PodError("the probe server did not start%s%s" % (
            ": %s" % reason if reason else " within %s s" % self.params["timeout"],
            "; its log: %s" % log_text if log_text else ""))

    def server_listens(self, record, answer):
        if not answer or not answer.get("ready"):
            self.server_failed(record, answer)
        self.close_pipes()
        record["listening"] = list(answer.get("listening") or [])
        self.actions.append("the probe server (pid %d) listens on %s%s" % (
            record["pid"], ", ".join(record["listening"]),
            "" if record["mode"] != "host" else " in the node's network namespace"))

    def bind_server(self, record, addresses):
        """Tell a pod's server its addresses (the wired pod's own), and wait until it listens on them."""
        if not addresses:
            self.server_failed(record, {"error": "the pod has no global address after it was wired"})
        message = json.dumps({"bind": addresses}) + "\n"
        try:
            os.write(self._control, message.encode("utf-8"))
        except OSError as exc:
            self.server_failed(record, {"error": "cannot send its addresses: %s" % to_native(exc)})
        os.close(self._control)
        self._control = None
        record["bind"] = list(addresses)
        self.server_listens(record, self.ready_line())

    # -- CNI ----------------------------------------------------------------

    def cni_config(self):
        path = self.params["conflist"]
        text = read_text(path)
        if text is None:
            raise PodError("the CNI configuration list %s cannot be read" % path)
        try:
            conf = json.loads(text)
        except ValueError as exc:
            raise PodError("the CNI configuration list %s is not JSON: %s" % (path, exc))
        if not isinstance(conf, dict) or not isinstance(conf.get("plugins"), list) or not conf["plugins"]:
            raise PodError("%s is not a CNI configuration list (no 'plugins' list)" % path)
        for key in ("cniVersion", "name"):
            if not conf.get(key):
                raise PodError("the CNI configuration list %s has no %r" % (path, key))
        for index, plugin in enumerate(conf["plugins"]):
            if not isinstance(plugin, dict) or not plugin.get("type"):
                raise PodError("plugin #%d of %s has no 'type'" % (index, path))
        return conf

    def cni_bin_dirs(self):
        return [d for d in self.params["cni_bin_dirs"] if os.path.isdir(d)]

    def cni_plugin_path(self, plugin_type, dirs):
        for folder in dirs:
            path = os.path.join(folder, plugin_type)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise PodError("CNI plugin %r not found in %s" % (plugin_type, ", ".join(self.params["cni_bin_dirs"])))

    def cni_call(self, command, conf, index, netns, prev_result, dirs):
        plugin = dict(conf["plugins"][index])
        plugin["cniVersion"] = conf["cniVersion"]
        plugin["name"] = conf["name"]
        if prev_result is not None:
            plugin["prevResult"] = prev_result
        exe = self.cni_plugin_path(plugin["type"], dirs)
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=self.name, CNI_NETNS=netns,
                   CNI_IFNAME=self.params["ifname"], CNI_PATH=":".join(dirs))
        try:
            proc = subprocess.run([exe], input=json.dumps(plugin).encode("utf-8"), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=self.params["timeout"] * 6, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PodError("CNI %s %s: %s" % (command, plugin["type"], to_native(exc)))
        out = proc.stdout.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            detail = out or proc.stderr.decode("utf-8", "replace").strip()
            try:
                err = json.loads(out)
                detail = "%s%s (code %s)" % (err.get("msg"), "; %s" % err["details"] if err.get("details") else "",
                                             err.get("code"))
            except (ValueError, AttributeError):
                pass
            raise PodError("CNI %s of plugin %r (%s) failed: %s" % (command, plugin["type"], exe, detail))
        self.actions.append("CNI %s %s" % (command, plugin["type"]))
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise PodError("CNI %s of plugin %r printed no JSON result: %s" % (command, plugin["type"], out[:500]))

    def cni_add(self, record):
        conf = record["cni"]["config"]
        dirs = self.cni_bin_dirs()
        prev = None
        for index in range(len(conf["plugins"])):
            result = self.cni_call("ADD", conf, index, record["netns"], prev, dirs)
            record["cni"]["added"].append(index)
            if result is not None:
                prev = result
            record["cni"]["result"] = prev
            self.save(record)

    def cni_del(self, record):
        cni = record.get("cni") or {}
        conf = cni.get("config")
        if not conf:
            return
        dirs = self.cni_bin_dirs()
        for index in reversed(cni.get("added") or []):
            try:
                self.cni_call("DEL", conf, index, record.get("netns") or "", cni.get("result"), dirs)
            except PodError as exc:
                self.warnings.append(str(exc))
        cni["added"] = []

    # -- veth ---------------------------------------------------------------

    def link_exists(self, name):
        rc, _out, _err = self.run([self.bin("ip"), "link", "show", "dev", name], check=False)
        return rc == 0

    def veth_add(self, record):
        bridge = self.params["bridge"]
        ip = self.bin("ip")
        try:
            links = run_ip_json(ModuleRunner(self.module), ["-details", "link", "show", "dev", bridge], numeric=False,
                                tolerate=True)
        except EngineError:
            links = []
        if not links:
            raise PodError("the bridge %s does not exist on this node" % bridge)
        link = links[0]
        if (link.get("linkinfo") or {}).get("info_kind") != "bridge":
            raise PodError("%s is not a bridge" % bridge)
        mtu = str(link.get("mtu") or 1500)
        host_if = record["veth"]["host_if"]
        pid = record["pid"]
        self.run([ip, "link", "add", host_if, "mtu", mtu, "type", "veth", "peer", "name",
                  self.params["ifname"], "mtu", mtu, "netns", str(pid)])
        self.actions.append("created veth %s (node) / %s (pod)" % (host_if, self.params["ifname"]))
        self.run([ip, "link", "set", "dev", host_if, "master", bridge, "up"])
        self.actions.append("attached %s to %s" % (host_if, bridge))
        ifname = self.params["ifname"]
        lines = ["link set dev lo up"]
        for address in record["veth"]["addresses"]:
            lines.append("address add %s dev %s%s" % (address, ifname, " nodad" if ":" in address else ""))
        lines.append("link set dev %s up" % ifname)
        for gateway in record["veth"]["gateways"]:
            lines.append("route add %s via %s dev %s" % ("::/0" if ":" in gateway else "0.0.0.0/0", gateway, ifname))
        self.in_netns(record["netns"], [ip, "-batch", "-"], data=("\n".join(lines) + "\n").encode("utf-8"))
        self.actions.append("configured %s in the pod: %s; default via %s" % (
            ifname, ", ".join(record["veth"]["addresses"]), ", ".join(record["veth"]["gateways"]) or "none"))

    def veth_del(self, host_if):
        if host_if and self.link_exists(host_if):
            self.run([self.bin("ip"), "link", "del", "dev", host_if], check=False)
            self.actions.append("deleted veth %s" % host_if)
            return True
        return False

    # -- addresses ------------------------------------------------------------

    def addresses(self, netns):
        try:
            links = run_ip_json(ModuleRunner(self.module), ["address", "show"], numeric=False, netns=netns)
        except EngineError as exc:
            raise PodError(exc.msg)
        result = []
        for link in links:
            for info in link.get("addr_info", []):
                if info.get("scope") == "global" and info.get("local"):
                    result.append("%s/%s" % (info["local"], info.get("prefixlen")))
        return result

    # -- the whole pod ---------------------------------------------------------

    def desired(self):
        mode = self.params["mode"]
        record = {"version": RECORD_VERSION, "name": self.name, "mode": mode, "port": self.params["port"],
                  "ifname": self.params["ifname"], "lifetime": self.params["lifetime"],
                  "max_threads": self.params["max_threads"]}
        if mode == "host":
            record["bind"] = [normalize_address(a) for a in self.params["bind"]]
        if mode == "cni":
            record["cni"] = {"conflist": self.params["conflist"], "config": self.cni_config(), "added": [],
                             "result": None}
        elif mode == "veth":
            record["veth"] = {"host_if": host_interface_name(self.name), "bridge": self.params["bridge"],
                              "addresses": list(self.params["addresses"]),
                              "gateways": list(self.params["gateways"])}
        return record

    @staticmethod
    def same(current, wanted):
        keys = ("mode", "port", "ifname", "lifetime", "max_threads")
        if any(current.get(k) != wanted.get(k) for k in keys):
            return False
        if wanted["mode"] == "host":
            return current.get("bind") == wanted["bind"]
        if wanted["mode"] == "cni":
            return (current.get("cni") or {}).get("config") == wanted["cni"]["config"]
        if wanted["mode"] == "veth":
            cur = current.get("veth") or {}
            return all(cur.get(k) == wanted["veth"][k] for k in ("bridge", "addresses", "gateways"))
        return True

    def create(self, record):
        self.ensure_state_dir()
        try:
            self.spawn_server(record)
            self.save(record)
            if record["mode"] != "host":
                if record["mode"] == "cni":
                    self.cni_add(record)
                elif record["mode"] == "veth":
                    self.veth_add(record)
                self.bind_server(record, [a.split("/", 1)[0] for a in self.addresses(record["netns"])])
            self.save(record)
        finally:
            self.close_pipes()

    def remove(self, record):
        """Undo a recorded pod, tolerating whatever part of it is already gone."""
        if record.get("mode") == "cni":
            self.cni_del(record)
        host_if = (record.get("veth") or {}).get("host_if") or host_interface_name(self.name)
        self.veth_del(host_if)
        kill_process(record, self.actions)
        self.cleanup_state_dir()

    def result(self, record, changed):
        out = {"changed": changed, "name": self.name, "mode": record.get("mode"), "state_file": self.record_path,
               "actions": self.actions}
        if record.get("pid") is not None:
            out.update(pid=record["pid"], netns=record.get("netns"), port=record.get("port"),
                       listening=record.get("listening") or [], lifetime=record.get("lifetime"),
                       expires=(record["created"] + record["lifetime"]
                                if record.get("lifetime") and record.get("created") else None))
            try:
                addresses = self.addresses(record.get("netns")) if process_is_ours(record) else []
            except PodError as exc:
                self.warnings.append(str(exc))
                addresses = []
            out["addresses"] = addresses
            out["ips"] = [a.split("/", 1)[0] for a in addresses]
        if record.get("mode") == "veth":
            out["host_interface"] = record["veth"]["host_if"]
        if record.get("mode") == "cni":
            out["cni_result"] = (record.get("cni") or {}).get("result")
        return out


def fresh(record, now=None):
    """A running pod is reused only while at least half of its lifetime is left (a pod left by an interrupted
    run would otherwise exit in the middle of the next one)."""
    lifetime = record.get("lifetime") or 0
    if not lifetime:
        return True
    created = record.get("created")
    if not isinstance(created, (int, float)):
        return False
    return created + lifetime - (time.time() if now is None else now) >= lifetime / 2.0


def bind_errors(mode, bind):
    """What is wrong with O(bind) for O(mode): a host server needs its addresses, a pod has its own."""
    if mode != "host":
        return ["bind is only for mode=host (a pod's server listens on the pod's own addresses)"] if bind else []
    if not bind:
        return ["mode=host needs bind: the addresses the server listens on (a probe server never listens on "
                "every address of a host)"]
    errors = []
    for address in bind:
        try:
            addr = ipaddress.ip_address(str(address))
        except ValueError:
            errors.append("bind: %r is not an IP address" % (address,))
            continue
        if addr.is_unspecified:
            errors.append("bind: %s is a wildcard address; give the probe address itself" % addr)
    return errors


def describe(record):
    if not record:
        return "absent\n"
    return "probe pod %s: mode %s, port %s, pid %s\n" % (record.get("name"), record.get("mode"), record.get("port"),
                                                         record.get("pid"))


def param_errors(params):
    """What is wrong with the parameters of one pod (an empty list: nothing)."""
    errors = []
    if not params.get("name") or not NAME_RE.match(params["name"]):
        errors.append("name %r: use letters, digits, '.', '_' and '-' (at most 63 characters)" % params.get("name"))
    if not 1 <= params["port"] <= 65535:
        errors.append("port %d is not a TCP port" % params["port"])
    problem = ifname_problem(params["ifname"])
    if problem:
        errors.append("ifname %r %s" % (params["ifname"], problem))
    if params["lifetime"] < 0:
        errors.append("lifetime %s: must be 0 (no limit) or a positive number of seconds" % params["lifetime"])
    if params["max_threads"] < 1:
        errors.append("max_threads %d: must be at least 1" % params["max_threads"])
    if params["state"] == "present":
        if not params.get("mode"):
            errors.append("probe pod %s: state=present needs mode" % params.get("name"))
        elif params["mode"] == "veth" and not params.get("addresses"):
            errors.append("probe pod %s: mode=veth needs addresses" % params.get("name"))
        else:
            errors.extend("probe pod %s: %s" % (params["name"], e) for e in bind_errors(params["mode"], params["bind"]))
    return errors


def one_pod(module, params):
    """Make or remove one pod; its result (``failed`` and ``msg`` when a step failed)."""
    pod = Pod(module, params)
    current = pod.load()
    try:
        if params["state"] == "absent":
            if current is None:
                host_if = host_interface_name(pod.name)
                changed = pod.link_exists(host_if)
                if changed and not module.check_mode:
                    pod.veth_del(host_if)
                result = {"changed": changed, "name": pod.name, "mode": None, "state_file": pod.record_path,
                          "actions": pod.actions}
            else:
                if not module.check_mode:
                    pod.remove(current)
                result = {"changed": True, "name": pod.name, "mode": current.get("mode"),
                          "state_file": pod.record_path, "actions": pod.actions}
            result["diff"] = {"before": describe(current), "after": "absent\n"}
        else:
            wanted = pod.desired()
            if current is not None and process_is_ours(current) and pod.same(current, wanted) and fresh(current):
                result = pod.result(current, changed=False)
                result["diff"] = {"before": describe(current), "after": describe(current)}
            elif module.check_mode:
                result = {"changed": True, "name": pod.name, "mode": wanted["mode"], "state_file": pod.record_path,
                          "actions": ["would %sstart the probe pod" % ("re" if current else "")]}
                result["diff"] = {"before": describe(current), "after": describe(wanted)}
            else:
                if current is not None:
                    pod.remove(current)
                else:
                    pod.veth_del(host_interface_name(pod.name))
                try:
                    pod.create(wanted)
                except BaseException:
                    if wanted.get("pid") is not None:
                        pod.remove(wanted)
                    raise
                result = pod.result(wanted, changed=True)
                result["diff"] = {"before": describe(current), "after": describe(wanted)}
    except (PodError, OSError) as exc:
        return {"failed": True, "changed": False, "name": pod.name, "msg": "probe pod %s: %s" % (
            pod.name, exc if isinstance(exc, PodError) else to_native(exc)), "actions": pod.actions,
            "warnings": pod.warnings}
    result["warnings"] = pod.warnings
    return result


POD_KEYS = ("name", "mode", "bind", "addresses", "gateways")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            pods=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                mode=dict(type="str", choices=["cni", "veth", "host"]),
                bind=dict(type="list", elements="str", default=[]),
                addresses=dict(type="list", elements="str", default=[]),
                gateways=dict(type="list", elements="str", default=[]),
            )),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            mode=dict(type="str", choices=["cni", "veth", "host"]),
            port=dict(type="int", default=47300),
            conflist=dict(type="path", default="/etc/cni/net.d/10-podnet.conflist"),
            cni_bin_dirs=dict(type="list", elements="path", default=["/opt/cni/bin", "/usr/lib/cni"]),
            ifname=dict(type="str", default="eth0"),
            bridge=dict(type="str", default="cbr0"),
            addresses=dict(type="list", elements="str", default=[]),
            gateways=dict(type="list", elements="str", default=[]),
            state_dir=dict(type="path", default="/run/podnet-verify"),
            timeout=dict(type="float", default=10.0),
            bind=dict(type="list", elements="str", default=[]),
            lifetime=dict(type="float", default=DEFAULT_LIFETIME),
            max_threads=dict(type="int", default=DEFAULT_MAX_THREADS),
        ),
        required_one_of=[("name", "pods")],
        mutually_exclusive=[("name", "pods")],
        supports_check_mode=True,
    )
    params = module.params
    if params["pods"] is None:
        items = [dict(params)]
    else:
        items = []
        for item in params["pods"]:
            merged = dict(params)
            merged.update({k: item[k] for k in POD_KEYS if item.get(k) not in (None, [])})
            items.append(merged)
        names = [i["name"] for i in items]
        if len(set(names)) != len(names):
            module.fail_json(msg="pods: a name is listed twice (%s)" % ", ".join(sorted(names)))
    errors = [e for item in items for e in param_errors(item)]
    if errors:
        module.fail_json(msg="; ".join(errors))
    results = []
    for item in items:
        result = one_pod(module, item)
        results.append(result)
        if result.get("failed"):
            break
    for result in results:
        for warning in result.pop("warnings", []):
            module.warn(warning)
        if not module._diff:
            result.pop("diff", None)
    failed = [r for r in results if r.get("failed")]
    if params["pods"] is None:
        result = results[0]
        if failed:
            result.pop("failed")
            module.fail_json(**result)
        module.exit_json(**result)
    out = {"changed": any(r.get("changed") for r in results), "pods": results}
    if module._diff:
        out["diff"] = {"before": "".join(r.get("diff", {}).get("before", "") for r in results),
                       "after": "".join(r.get("diff", {}).get("after", "") for r in results)}
        for r in results:
            r.pop("diff", None)
    if failed:
        module.fail_json(msg=failed[0]["msg"], **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
