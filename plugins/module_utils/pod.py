# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""A probe pod on one node (podnet.cluster.probe_pod): its record, the probe server it runs (detached, in its own
network namespace unless it is a host server), and making or removing it whole (``one_pod``). Its network (CNI,
veth, addresses) is module_utils.pod_network's."""

from __future__ import annotations

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

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import spawn
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, read_text
from ansible_collections.podnet.cluster.plugins.module_utils.ifname import ifname_problem
from ansible_collections.podnet.cluster.plugins.module_utils.pod_network import PodError, PodNetwork
from ansible_collections.podnet.cluster.plugins.module_utils.probe import SCRIPT_NAME, normalize_address, own_source

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RECORD_VERSION = 1


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


class Pod(PodNetwork):
    """Everything the module does, on one node, for one pod name (its network: PodNetwork)."""

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
        rc, out, err = spawn(argv, data, timeout=timeout)
        if check and rc != 0:
            raise PodError("%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()))
        return rc, out, err

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
