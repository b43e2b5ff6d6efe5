# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The node engine: one node's whole desired state (the node document) reconciled in one pass.

The controller computes the document (plugins/plugin_utils/document.py). Here, on the node:

* ``plan_node`` reads everything (bridge, routes, chains, sysctls, files, the record of the last run) and
  computes every change, including what an earlier run owned and the document no longer wants (a renamed
  bridge, a dropped runtime or family, masquerade turned off, another fabric);
* ``apply_node`` writes it, part by part, and then the record ``<state_dir>/node.json``;
* ``restore`` (the boot unit, the Docker drop-in) re-applies the kernel state of the record with the same
  functions; ``main`` is the command line of ``podnet-restore``.

The record keeps what podnet.cluster owns and what it found before it first changed a thing
(``pristine``), so teardown and transitions never depend on the current inventory alone.

Standard library only (Python 3.8+), no Ansible import: the node module copies these very files to
``<lib_dir>/lib`` for the boot-time restore.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import socket
import sys
import time
from contextlib import contextmanager

from ansible_collections.podnet.cluster.plugins.module_utils.engine import DOCUMENT_VERSION
from ansible_collections.podnet.cluster.plugins.module_utils.engine.bridge import (
    apply_bridge,
    plan_bridge,
    read_bridge,
    resolve_mtu,
)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.chains import (
    apply_chains,
    plan_chains,
    test_chains,
)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.jsonfile import ABSENT, apply_json, plan_json, read_object
from ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay import apply_overlay, bridge_mtu, plan_overlay
from ansible_collections.podnet.cluster.plugins.module_utils.engine.routes import apply_routes, plan_routes
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, ProcessRunner
from ansible_collections.podnet.cluster.plugins.module_utils.engine.sysctl import (
    apply_sysctl,
    canon_key,
    find_conflicts,
    plan_sysctl,
    read_live,
    validate_settings,
    write_live,
    write_order,
)
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, make_dirs, read_text
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import (
    describe_route,
    route_dst,
    route_protocol,
    run_ip_json,
)
from ansible_collections.podnet.cluster.plugins.module_utils.ifname import valid_ifname

RECORD_NAME = "node.json"
UNIT_NAME = "podnet-cluster.service"
DOCKER_DROPIN = "docker.service.d/10-podnet-cluster.conf"
RESTORE_NAME = "podnet-restore"
FILE_EXISTED = "__file_existed__"
# The files of the boot-time restore program: these modules, as the node module loaded them.
LIB_MODULES = (
    "ansible_collections.podnet.cluster.plugins.module_utils.engine",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.runner",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.bridge",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.chains",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.jsonfile",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.overlay",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.routes",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.sysctl",
    "ansible_collections.podnet.cluster.plugins.module_utils.engine.node",
    "ansible_collections.podnet.cluster.plugins.module_utils.fileutil",
    "ansible_collections.podnet.cluster.plugins.module_utils.ifname",
    "ansible_collections.podnet.cluster.plugins.module_utils.iproute",
    "ansible_collections.podnet.cluster.plugins.module_utils.iptables",
)
# Installed too when the node's uplink is enslaved in the bridge (fabric l2_bridge): the restore moves it again.
UPLINK_MODULE = "ansible_collections.podnet.cluster.plugins.module_utils.uplink"
RESTORE_SCRIPT = """#!%(interpreter)s
# Managed by podnet.cluster: restores this node's pod network (bridge, addresses, forwarding, chains, routes,
# the uplink of fabric l2_bridge) from the record written by the last Ansible run, part by part: a part that
# fails is reported (stderr, exit status 1) and the parts after it still run. Run by podnet-cluster.service at
# boot and after Docker starts. Usage: podnet-restore [--check] [--wait SECONDS] [--lock-timeout SECONDS] RECORD
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from ansible_collections.podnet.cluster.plugins.module_utils.engine.node import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
"""
# The boot unit waits this long for what comes late at boot (an address, a peer on-link, a gateway that answers
# through the bridge); the Docker drop-in does not wait, and gives up on the node lock after DROPIN_LOCK_TIMEOUT.
BOOT_WAIT = 120
DROPIN_LOCK_TIMEOUT = 5
# Where a Python interpreter is not worth recording for the boot unit: gone after a reboot.
VOLATILE_DIRS = ("/tmp/", "/run/", "/dev/shm/", "/var/run/")


# An abstract Unix socket name: it lives in the network namespace (one per node, lab nodes included), needs no
# file, and is released by the kernel when its holder exits, however it exits.
NODE_LOCK_NAME = "\0podnet.cluster/node-lock"


@contextmanager
def node_lock(timeout=600.0, interval=0.2):
    """Hold this node's podnet.cluster lock; yields the seconds waited for it.

    Two runs that change one node at once (two site runs, a run and the boot restore) would both read the node
    as it was and both add the same bridge or route ("File exists"); with the lock the second reads what the
    first left. Raises :class:`EngineError` after ``timeout`` seconds.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    start = time.monotonic()
    waited = False
    try:
        while True:
            try:
                sock.bind(NODE_LOCK_NAME)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise EngineError("cannot take the node lock (abstract socket %r): %s"
                                      % (NODE_LOCK_NAME[1:], exc))
                if time.monotonic() - start > timeout:
                    raise EngineError("another podnet.cluster run has held this node's lock (abstract socket %r) "
                                      "for more than %d s; nothing was changed" % (NODE_LOCK_NAME[1:], timeout))
                waited = True
                time.sleep(interval)
        # 0.0 unless another run held the lock (the clock alone moves between two reads)
        yield (time.monotonic() - start) if waited else 0.0
    finally:
        sock.close()


# --------------------------------------------------------------------------- #
# record, units, restore program
# --------------------------------------------------------------------------- #

def record_path(doc):
    return os.path.join(doc["state_dir"], RECORD_NAME)


def read_record(path):
    """The record of the last run, or None. EngineError for a record this code cannot read."""
    text = read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EngineError("%s is not valid JSON (%s): podnet.cluster cannot tell what it owns on this node; "
                          "restore the file from a backup or remove it to start over" % (path, exc))
    if not isinstance(data, dict) or not isinstance(data.get("document"), dict):
        raise EngineError("%s is not a podnet.cluster node record (no 'document' object)" % path)
    version = data.get("version")
    if not isinstance(version, int) or version > DOCUMENT_VERSION:
        raise EngineError("%s was written by a newer podnet.cluster (record version %r; this one reads up to %d): "
                          "upgrade the collection on the controller" % (path, version, DOCUMENT_VERSION))
    return data


def interpreter_problem(path):
    """Why the Python at ``path`` cannot run the boot-time restore, or None.

    The restore runs with the interpreter that ran the node module (``sys.executable``): it is known to import
    the engine. It must still be there at boot: an absolute path, executable, outside directories a reboot
    empties.
    """
    if not path or not os.path.isabs(path):
        return "the Python interpreter %r of this run is not an absolute path" % (path,)
    if any(path.startswith(d) for d in VOLATILE_DIRS):
        return ("the Python interpreter %s of this run lies in a directory a reboot empties; the boot unit could "
                "not run it" % path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return "the Python interpreter %s of this run is not an executable file" % path
    if sys.version_info < (3, 8):
        return "the Python interpreter %s of this run is %d.%d; the restore needs 3.8 or later" % (
            (path,) + tuple(sys.version_info[:2]))
    return None


def restore_command(doc, interpreter=None, boot=True):
    """The command line of the boot unit (``boot``) or of the Docker drop-in."""
    interpreter = interpreter or sys.executable
    options = ("--wait %d" % BOOT_WAIT) if boot else ("--wait 0 --lock-timeout %d" % DROPIN_LOCK_TIMEOUT)
    return "%s %s %s %s" % (interpreter, os.path.join(doc["lib_dir"], RESTORE_NAME), options, record_path(doc))


def unit_files(doc, interpreter=None):
    """{path: content} of the boot unit and the Docker drop-in (empty when units are off).

    Both run the restore with ``interpreter`` (default: the one running this code, that is the node module's).
    The drop-in's line starts with ``-``: whatever the restore meets, docker.service does not fail because of it.
    """
    units = doc.get("units") or {}
    if not units.get("enabled"):
        return {}
    directory = units.get("dir") or "/etc/systemd/system"
    files = {
        os.path.join(directory, UNIT_NAME): (
            "# Managed by podnet.cluster: local changes are overwritten.\n"
            "[Unit]\n"
            "Description=Pod network of podnet.cluster (bridge, routes, chains, forwarding)\n"
            "Documentation=file://%s\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n"
            "Before=docker.service containerd.service crio.service kubelet.service\n"
            "ConditionPathExists=%s\n"
            "\n"
            "[Service]\n"
            "Type=oneshot\n"
            "RemainAfterExit=yes\n"
            "ExecStart=%s\n"
            "\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n" % (record_path(doc), record_path(doc),
                                              restore_command(doc, interpreter))),
    }
    if units.get("docker_dropin"):
        files[os.path.join(directory, DOCKER_DROPIN)] = (
            "# Managed by podnet.cluster: dockerd strips the bridge's IPv6 addresses when it starts;\n"
            "# put the pod gateways back once it runs. The leading '-': a failure here is reported in the\n"
            "# journal and never fails docker.service.\n"
            "[Unit]\n"
            "Wants=%s\n"
            "After=%s\n"
            "\n"
            "[Service]\n"
            "ExecStartPost=-%s\n" % (UNIT_NAME, UNIT_NAME, restore_command(doc, interpreter, boot=False)))
    return files


def unit_links(doc):
    """{link path: target} that enable the unit (what systemctl enable makes)."""
    units = doc.get("units") or {}
    if not units.get("enabled"):
        return {}
    directory = units.get("dir") or "/etc/systemd/system"
    return {os.path.join(directory, "multi-user.target.wants", UNIT_NAME): os.path.join(directory, UNIT_NAME)}


def module_source(name):
    module = sys.modules.get(name)
    loader = getattr(module, "__loader__", None)
    text = None
    if loader is not None and hasattr(loader, "get_source"):
        try:
            text = loader.get_source(name)
        except Exception:  # pragma: no cover - depends on the importer
            text = None
    if text is None and getattr(module, "__file__", None) and os.path.isfile(module.__file__):
        with open(module.__file__, "r", encoding="utf-8") as handle:
            text = handle.read()
    if text is None:
        raise EngineError("cannot read the source of %s to install the restore program" % name)
    return text


def _lib_rel(name):
    return name.replace(".", "/") + ("/__init__.py" if name.endswith(".engine") else ".py")


def _uplink():
    """The uplink engine, imported only where a node has one (the restore program installs it only then)."""
    from ansible_collections.podnet.cluster.plugins.module_utils import uplink
    return uplink


def _lib_modules(doc):
    if doc.get("uplink"):
        _uplink()
        return LIB_MODULES + (UPLINK_MODULE,)
    return LIB_MODULES


def lib_paths(doc):
    base = os.path.join(doc["lib_dir"], "lib")
    return [os.path.join(doc["lib_dir"], RESTORE_NAME)] + [os.path.join(base, _lib_rel(n)) for n in _lib_modules(doc)]


def lib_files(doc, interpreter=None):
    """{path: content} of the restore program and the engine files it runs."""
    base = os.path.join(doc["lib_dir"], "lib")
    files = {os.path.join(doc["lib_dir"], RESTORE_NAME): RESTORE_SCRIPT % {"interpreter": interpreter or
                                                                           sys.executable}}
    for name in _lib_modules(doc):
        files[os.path.join(base, _lib_rel(name))] = module_source(name)
    return files


# --------------------------------------------------------------------------- #
# the uplink (fabric l2_bridge): moved by podnet.cluster.uplink_bridge, detached and confirmed
# --------------------------------------------------------------------------- #

def _snapshot_uplink(path):
    """The uplink's snapshot at ``path``, or None (no path, no file)."""
    if not path:
        return None
    uplink_engine = _uplink()
    try:
        saved = uplink_engine.load_snapshot(path)
    except (uplink_engine.UplinkError, OSError, ValueError) as exc:
        raise EngineError("%s cannot be read (%s): it holds the uplink's addresses and routes from before its move "
                          "into the bridge" % (path, exc))
    return saved


def uplink_tasks(doc, record, state="present"):
    """(release, move): the arguments of podnet.cluster.uplink_bridge to run before and after the node's apply.

    ``release`` (state absent) puts back an uplink that an earlier run moved into a bridge, when the document no
    longer wants it there (another fabric, another bridge, teardown); ``move`` (state present) moves the uplink
    of the document's fabric l2_bridge. None when there is nothing of the kind. The moves themselves are not the
    node module's: they run detached from the connection and are confirmed over a new one.
    """
    want = doc.get("uplink") if state == "present" else None
    old = ((record or {}).get("document") or {}).get("uplink")
    if old is None and state != "present":
        old = doc.get("uplink")
    release = None
    if old and (want is None or want.get("bridge") != old.get("bridge")):
        path = old.get("snapshot_path")
        saved = _snapshot_uplink(path)
        if saved is not None:
            release = dict(bridge=old["bridge"], uplink=saved.get("uplink"), state="absent", snapshot_path=path,
                           check_address=list(old.get("check_address") or []),
                           check_method=old.get("check_method", "ping"),
                           check_timeout=int(old.get("check_timeout", 5)),
                           rollback_timeout=int(old.get("rollback_timeout", 30)))
    move = dict(want, state="present") if want else None
    return release, move


def restore_uplink(runner, doc, check=False, wait=0):
    """The boot-time part of fabric l2_bridge: move the uplink into the bridge again (nothing when it is there).

    ``wait`` (seconds, the boot unit's): the check after the move is retried with backoff that long before the
    move is rolled back; an uplink address that is on no link yet is a retryable error (the caller retries).
    Returns (changed, summary); EngineError when the move was rolled back (the node keeps its uplink as it was).
    """
    spec = doc.get("uplink")
    if not spec:
        return False, {}
    uplink_engine = _uplink()
    ip = runner.which("ip")
    bridge = spec["bridge"]
    path = spec.get("snapshot_path")
    saved = _snapshot_uplink(path)
    try:
        if spec.get("uplink"):
            name = spec["uplink"]
        else:
            name = uplink_engine.find_uplink(runner, spec["uplink_address"], bridge, saved, ip)
    except uplink_engine.UplinkError as exc:
        raise EngineError("the uplink of %s: %s" % (bridge, exc), retry=True)
    try:
        before = uplink_engine.read_snapshot(runner, bridge, name, ip)
        if not spec.get("uplink") and not uplink_engine.global_addresses(before, name) \
                and (before["links"].get(name) or {}).get("master") != bridge:
            raise EngineError("the uplink of %s: %s holds no global address yet" % (bridge, name), retry=True)
        lines = uplink_engine.plan_move(before)
        if not lines or check:
            return bool(lines), ({"uplink %s" % name: {"commands": lines}} if lines else {})
        if saved is None and path:
            uplink_engine.save_snapshot(path, before)
        timeout = max(float(spec.get("check_timeout", 5)), float(wait))
        out = uplink_engine.move(runner, bridge, name, spec.get("check_address") or None,
                                 spec.get("check_method", "ping"), timeout, None, before, ip, backoff=wait > 0)
    except uplink_engine.UplinkError as exc:
        raise EngineError("the uplink of %s: %s" % (bridge, exc))
    if out["error"]:
        raise EngineError("moving %s into %s was rolled back (%s)%s" % (
            name, bridge, out["error"], "" if out.get("rollback_complete") else "; the rollback is incomplete"))
    return True, {"uplink %s" % name: {"commands": out["commands"]}}


# --------------------------------------------------------------------------- #
# whole files
# --------------------------------------------------------------------------- #

def plan_file(path, content, mode=0o644):
    """Change of one whole file the collection owns (content None: remove it)."""
    old = read_text(path)
    changed = old != content
    return dict(changed=changed, path=path, content=content, mode=mode,
                diff=dict(before=old or "", after=content or "", before_header=path, after_header=path))


def apply_file(change):
    try:
        if change["content"] is None:
            if os.path.lexists(change["path"]):
                os.unlink(change["path"])
        else:
            change["created_dirs"] = atomic_write(change["path"], change["content"], mode=change["mode"],
                                                  create_dirs=True)
    except OSError as exc:
        raise EngineError("cannot write %s: %s" % (change["path"], exc))


def plan_link(path, target):
    """Change of one symlink (target None: remove it, only when it points where ours would)."""
    try:
        current = os.readlink(path)
    except OSError:
        current = None
    changed = current != target
    return dict(changed=changed, path=path, target=target,
                diff=dict(before="%s -> %s\n" % (path, current) if current else "",
                          after="%s -> %s\n" % (path, target) if target else "",
                          before_header=path, after_header=path))


def apply_link(change):
    try:
        if os.path.lexists(change["path"]):
            os.unlink(change["path"])
        if change["target"]:
            change["created_dirs"] = make_dirs(os.path.dirname(change["path"]))
            os.symlink(change["target"], change["path"])
    except OSError as exc:
        raise EngineError("cannot write the link %s: %s" % (change["path"], exc))


# --------------------------------------------------------------------------- #
# the document
# --------------------------------------------------------------------------- #

REQUIRED = ("version", "node", "state_dir", "lib_dir", "bridge", "owned_cidrs", "sysctl", "iptables", "routes")


def check_document(doc):
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise EngineError("the node document lacks %s" % ", ".join(missing))
    if doc["version"] != DOCUMENT_VERSION:
        raise EngineError("node document version %r is not %d: the controller and this module differ"
                          % (doc["version"], DOCUMENT_VERSION))
    for key in ("state_dir", "lib_dir"):
        if not str(doc[key]).startswith("/"):
            raise EngineError("%s %r is not an absolute path" % (key, doc[key]))


def _cni_text(conflist, mtu):
    data = json.loads(json.dumps(conflist))
    if mtu:
        for plugin in data.get("plugins", []):
            if plugin.get("type") == "bridge":
                plugin["mtu"] = int(mtu)
    return json.dumps(data, indent=2) + "\n"


def _chain_sets(doc):
    """{(ip_version, table): [chain names]} of a document."""
    out = {}
    for item in doc.get("iptables") or []:
        out.setdefault((int(item["ip_version"]), item["table"]), []).extend(c["name"] for c in item["chains"])
    return out


class Plan(object):
    """The parts of one node's change, in apply order, and the record to write after them."""

    def __init__(self):
        self.parts = []       # (name, change, apply function)
        self.warnings = []
        self.record = None
        self.record_change = None
        self.docker_changed = False

    def add(self, name, change, func):
        self.parts.append((name, change, func))

    @property
    def changed(self):
        return any(change["changed"] for _n, change, _f in self.parts)

    def summary(self, commands=True):
        """What changed, by part; without ``commands`` the batch lines and restore texts are left out."""
        out = {name: _short(change) for name, change, _f in self.parts if change["changed"]}
        if not commands:
            for part in out.values():
                part.pop("commands", None)
                part.pop("restore", None)
        return out

    def diff(self):
        out = []
        for name, change, _f in self.parts:
            d = change.get("diff")
            if change["changed"] and d:
                out.append(dict(d, before_header="%s: %s" % (name, d.get("before_header", "")),
                                after_header="%s: %s" % (name, d.get("after_header", ""))))
        return out


def _short(change):
    keep = ("commands", "added", "removed", "replaced", "restore", "set_keys", "removed_keys", "changed_keys",
            "file_changed", "created", "deleted", "path", "target")
    return {k: v for k, v in change.items() if k in keep and v not in (None, [], {}, "")}


def foreign_in_cluster(runner, doc, old=None):
    """Routes and local addresses podnet.cluster does not own that lie inside a cluster network.

    A pod route (or a pod gateway) would shadow them: a VPN or second-NIC network inside the cluster network
    is cut off. Ours: routes of our protocol (this document's or the record's), routes and addresses on our
    bridge (this document's or the record's). Returns one line per problem.
    """
    old = old or {}
    clusters = []
    for cidr in doc.get("owned_cidrs") or []:
        try:
            clusters.append(ipaddress.ip_network(cidr))
        except ValueError:
            raise EngineError("owned_cidrs: %r is not a network" % (cidr,))
    if not clusters:
        return []
    bridges = {doc["bridge"]["name"], (old.get("bridge") or {}).get("name")} | set(overlay_devices(doc, old))
    protocols = {doc["routes"]["protocol"], (old.get("routes") or {}).get("protocol")}
    problems = []
    for fam in sorted({c.version for c in clusters}):
        nets = [c for c in clusters if c.version == fam]
        for route in run_ip_json(runner, ["-%d" % fam, "route", "show", "table", "main"], tolerate=fam == 6):
            try:
                dst = route_dst(route, fam)
            except ValueError:
                continue
            if route_protocol(route) in protocols or route.get("dev") in bridges:
                continue
            for net in nets:
                if dst.prefixlen >= net.prefixlen and dst.subnet_of(net):
                    problems.append("route '%s' lies inside the cluster network %s" % (describe_route(route, fam), net))
    for entry in run_ip_json(runner, ["addr", "show"], numeric=False):
        if entry.get("ifname") in bridges:
            continue
        for info in entry.get("addr_info") or []:
            try:
                addr = ipaddress.ip_address(info.get("local", ""))
            except ValueError:
                continue
            for net in clusters:
                if addr in net:
                    problems.append("address %s/%s on %s lies inside the cluster network %s"
                                    % (addr, info.get("prefixlen"), entry.get("ifname"), net))
    return problems


def overlay_devices(doc, old=None):
    """Names of the overlay devices of a document and of the record's (fabric vxlan)."""
    names = []
    for d in (doc or {}), (old or {}):
        names.extend(dev["name"] for dev in (d.get("overlay") or {}).get("devices") or [])
    return sorted(set(names))


def _pristine_of(record):
    return dict((record or {}).get("pristine") or {})


def plan_node(runner, doc, record=None, state="present", kernel_only=False, diff=True):
    """Every change that makes the node match ``doc`` (state=present) or removes podnet.cluster (absent).

    ``record`` is the record of the last run (read_record), or None. ``kernel_only`` (the restore) limits
    the work to the bridge, routes, chains and live sysctls. Raises EngineError before any write.
    """
    check_document(doc)
    plan = Plan()
    present = state == "present"
    if record is None and not present:
        # teardown without a record: remove what carries podnet.cluster's names and marks (its chains, routes of
        # its protocol, its unit, restore and CNI files), restore nothing, and keep the bridge's link: no record
        # says podnet.cluster created it (an operator's bridge of that name must survive)
        name = doc["bridge"]["name"]
        record = dict(document=doc, files=sorted(list(unit_files(doc)) + lib_paths(doc)
                                                 + ([doc["cni"]["file"]] if doc.get("cni") else [])),
                      links=sorted(unit_links(doc)), pristine={"bridge_existed": {name: True}})
        if read_bridge(runner, name)[0] is not None:
            plan.warnings.append("node %s: no record at %s, so the bridge %s is left as it is (podnet.cluster has "
                                 "no record of creating it); delete it by hand if it was podnet.cluster's"
                                 % (doc["node"], record_path(doc), name))
    old = (record or {}).get("document") or {}
    pristine = _pristine_of(record)
    pristine.setdefault("sysctl", {})
    pristine.setdefault("docker", {})
    pristine.setdefault("bridge_existed", {})
    bridge = doc["bridge"]
    if present and not kernel_only:
        problems = foreign_in_cluster(runner, doc, old)
        if problems:
            raise EngineError(
                "node %s: %d route(s) or address(es) that podnet.cluster does not own lie inside the cluster "
                "network (podnet_cluster_cidrs); pod routes and gateways would shadow them: %s. Choose a cluster "
                "network that does not overlap them, or remove them." % (doc["node"], len(problems),
                                                                         "; ".join(problems[:10])),
                foreign=problems)
    owned_cidrs = list(doc.get("owned_cidrs") or []) + [c for c in old.get("owned_cidrs") or []
                                                        if c not in (doc.get("owned_cidrs") or [])]

    # ---- sysctls: live forwarding, the persisted file
    settings = dict(doc["sysctl"].get("settings") or {}) if present else {}
    if present:
        # accept_ra first: the write order puts these keys before forwarding (see engine.sysctl.write_order)
        settings = dict(ra_settings(runner, settings, doc.get("uplink"), (old.get("sysctl") or {}).get("settings")),
                        **settings)
    if present:
        # the record keeps the settings in force (accept_ra included), so teardown puts each one back
        doc = dict(doc, sysctl=dict(doc["sysctl"], settings=dict(settings)))
    # keys of the bridge, which this change may create before it writes them
    not_yet = {k for k in settings if k.startswith("net/ipv6/conf/%s/" % bridge["name"])}
    for key in settings:
        if key not in pristine["sysctl"]:
            pristine["sysctl"][key] = read_live(key, missing_ok=key in not_yet)
    sysctl_change = plan_sysctl(settings, doc["sysctl"]["file"], apply=True,
                                conflicts=doc["sysctl"].get("conflicts", "fail") if present else "ignore",
                                warn=plan.warnings.append, not_yet=not_yet)
    dropped = [k for k in (old.get("sysctl") or {}).get("settings") or {} if k not in settings]
    for key in write_order(dropped, teardown=True):
        before = pristine["sysctl"].get(key)
        # a link that is gone took its keys with it
        if before is not None and read_live(key, missing_ok=True) not in (before, None):
            sysctl_change["to_write"].append((key, "/proc/sys/" + canon_key(key), before))
            sysctl_change["changed_keys"].append(key)
            sysctl_change["changed"] = True
    old_file = (old.get("sysctl") or {}).get("file")
    if old_file and old_file != doc["sysctl"]["file"]:
        plan.add("sysctl file", plan_file(old_file, None), apply_file)
    if kernel_only:
        sysctl_change["file_changed"] = False
        sysctl_change["changed"] = bool(sysctl_change["to_write"])

    # ---- bridge: an old one (renamed, or teardown) first, then ours
    old_bridge = (old.get("bridge") or {}).get("name")
    recorded_addrs = list((old.get("bridge") or {}).get("addresses") or [])
    if old_bridge and (old_bridge != bridge["name"] or not present):
        if read_bridge(runner, old_bridge)[0] is not None:
            # a bridge that was there before podnet.cluster keeps its link; only our addresses go
            change = plan_bridge(runner, old_bridge, (), owned_cidrs, state="absent", owned_addresses=recorded_addrs,
                                 keep_link=pristine["bridge_existed"].get(old_bridge, False))
            plan.warnings.extend(change.pop("warnings"))
            plan.add("old bridge %s" % old_bridge, change, lambda c: apply_bridge(runner, c))
    if present:
        exists = read_bridge(runner, bridge["name"])[0] is not None
        if not exists and not bridge_supported():
            raise EngineError("node %s: the kernel has no bridge support (module bridge is neither loaded nor "
                              "installed for %s): podnet.cluster needs the Linux bridge for %s"
                              % (doc["node"], os.uname().release, bridge["name"]))
        if bridge["name"] not in pristine["bridge_existed"]:
            pristine["bridge_existed"][bridge["name"]] = exists
        bmtu = bridge.get("mtu") or (bridge_mtu(runner, doc["overlay"]) if doc.get("overlay") else None)
        bchange = plan_bridge(runner, bridge["name"], bridge.get("addresses") or [], owned_cidrs,
                              bmtu, bridge.get("mtu_from_address"), "present",
                              owned_addresses=recorded_addrs if old_bridge == bridge["name"] else ())
        plan.warnings.extend(bchange.pop("warnings"))
        plan.add("bridge %s" % bridge["name"], bchange, lambda c: apply_bridge(runner, c))
        mtu = bchange["mtu"]
    else:
        mtu = None

    plan.add("sysctl", sysctl_change, apply_sysctl)

    # ---- iptables: chains the document no longer has, then the wanted ones
    wanted = _chain_sets(doc) if present else {}
    for (ipv, table), names in sorted(_chain_sets(old).items()):
        gone = [n for n in names if n not in wanted.get((ipv, table), [])]
        if gone:
            change = plan_chains(runner, ipv, table, [{"name": n} for n in gone], state="absent")
            plan.add("iptables IPv%d %s (removed)" % (ipv, table), change, lambda c: apply_chains(runner, c))
    if present:
        # The FORWARD policy is the host's: never read into the record, never changed (PODNET-FORWARD accepts pod
        # traffic under DROP); a record of an earlier version that kept it drops it.
        pristine.pop("forward_policy", None)
        for item in doc.get("iptables") or []:
            ipv = int(item["ip_version"])
            change = plan_chains(runner, ipv, item["table"], item["chains"])
            plan.add("iptables IPv%d %s" % (ipv, item["table"]), change, lambda c: apply_chains(runner, c))

    # ---- overlay devices an earlier run made and this one does not want (fabric vxlan left): before the routes
    skip = overlay_devices(doc, old)
    if old.get("overlay"):
        change = plan_overlay(runner, None, doc["node"], (old.get("routes") or {}).get("protocol", 158), "absent",
                              old=dict(old["overlay"], devices=[d for d in old["overlay"].get("devices") or []
                                                                if d["name"] not in overlay_devices(doc if present
                                                                                                    else {})]))
        plan.add("overlay (removed)", change, lambda c: apply_overlay(runner, c))

    # ---- routes (one pass, both families); an old protocol number is cleaned too
    routes = doc["routes"]
    old_proto = (old.get("routes") or {}).get("protocol")
    if old_proto is not None and (old_proto != routes["protocol"] or not present):
        change = plan_routes(runner, (), doc["node"], old_proto, (old.get("routes") or {}).get("table", "main"),
                             "absent", keep=pristine.get("foreign_routes") or (),
                             skip_devs=skip)
        plan.add("routes proto %s (removed)" % old_proto, change, lambda c: apply_routes(runner, c))
    keep = list(pristine.get("foreign_routes") or [])
    if present:
        change = plan_routes(runner, routes.get("routes") or [], doc["node"], routes["protocol"],
                             routes.get("table", "main"), "present", diff=diff, keep=keep,
                             skip_devs=skip)
        if record is None and change["removed"] and not kernel_only:
            # the first converge here: routes of our protocol that are not among ours belong to somebody else
            found = [r["route"] for r in change["removed"]]
            plan.warnings.append(
                "node %s: %d route(s) with protocol %s (podnet_route_protocol) exist before podnet.cluster's first "
                "converge here and are not among its routes: %s. They are left alone and recorded as not "
                "podnet.cluster's; if another tool uses protocol %s, give podnet_route_protocol a free number "
                "(and remove the routes of the old number by hand if they were an earlier podnet.cluster's)"
                % (doc["node"], len(found), routes["protocol"], "; ".join(found[:10]), routes["protocol"]))
            keep = sorted(set(keep) | {r["ident"] for r in change["removed"]})
            pristine["foreign_routes"] = keep
            change = plan_routes(runner, routes.get("routes") or [], doc["node"], routes["protocol"],
                                 routes.get("table", "main"), "present", diff=diff, keep=keep,
                                 skip_devs=skip)
        plan.add("routes", change, lambda c: apply_routes(runner, c))
    elif old_proto is None:
        change = plan_routes(runner, (), doc["node"], routes["protocol"], routes.get("table", "main"), "absent",
                             keep=keep, skip_devs=skip)
        plan.add("routes", change, lambda c: apply_routes(runner, c))

    # ---- the overlay (fabric vxlan): devices, then per peer its neighbour, FDB entry and route
    if present and doc.get("overlay"):
        change = plan_overlay(runner, doc["overlay"], doc["node"], routes["protocol"], "present", diff=diff,
                              ours=skip)
        plan.add("overlay", change, lambda c: apply_overlay(runner, c))

    if kernel_only:
        return plan

    # ---- Docker: our keys; keys an earlier run set and this one does not are put back as they were
    docker = doc.get("docker") if present else None
    old_docker = old.get("docker")
    files_to_restore = {}
    if old_docker and (not docker or old_docker["file"] != docker["file"]):
        # every key podnet.cluster set there (mtu included), as recorded before its first change
        files_to_restore[old_docker["file"]] = sorted(set(old_docker["set"]) | set(
            k for k in pristine["docker"].get(old_docker["file"], {}) if k != FILE_EXISTED))
    elif old_docker and docker:
        gone = [k for k in old_docker["set"] if k not in docker["set"]]
        if gone:
            files_to_restore[old_docker["file"]] = gone
    for path, keys in files_to_restore.items():
        before = pristine["docker"].get(path, {})
        restore = {k: before.get(k, ABSENT) for k in keys if k != FILE_EXISTED}
        change = plan_json(path, restore=restore)
        if before.get(FILE_EXISTED) is False and not change["content"]:
            change = plan_file(path, None)      # podnet.cluster made the file and nothing else is in it
        plan.add("docker %s (restored)" % path, change, apply_json if "_write" in change else apply_file)
        plan.docker_changed = plan.docker_changed or change["changed"]
    if docker:
        keys = dict(docker["set"])
        if docker.get("mtu_from_bridge") and mtu:
            keys["mtu"] = int(mtu)
        current, text = _read_json_quiet(docker["file"])
        recorded = pristine["docker"].setdefault(docker["file"], {})
        recorded.setdefault(FILE_EXISTED, text is not None)
        for key in keys:
            if key not in recorded:
                recorded[key] = current.get(key, ABSENT) if current is not None else ABSENT
        change = plan_json(docker["file"], keys, refuse=docker.get("refuse") or {}, create_dirs=True)
        plan.add("docker %s" % docker["file"], change, apply_json)
        plan.docker_changed = plan.docker_changed or change["changed"]

    # ---- whole files: CNI conflist, units, restore program; an old file no longer wanted goes
    files = {}
    cni = doc.get("cni") if present else None
    if cni:
        files[cni["file"]] = _cni_text(cni["conflist"], mtu if cni.get("mtu_from_bridge") else None)
    if present:
        if doc.get("units", {}).get("enabled"):
            problem = interpreter_problem(sys.executable)
            if problem:
                raise EngineError("node %s: %s. Set ansible_python_interpreter for this host to a Python 3.8+ "
                                  "that stays installed (the boot unit and the Docker drop-in run the restore with "
                                  "it)" % (doc["node"], problem))
        files.update(unit_files(doc))
        files.update(lib_files(doc))
    old_files = set((record or {}).get("files") or [])
    for path in sorted(old_files - set(files)):
        plan.add("file %s (removed)" % path, plan_file(path, None), apply_file)
    for path in sorted(files):
        mode = 0o755 if path.endswith(RESTORE_NAME) else 0o644
        plan.add("file %s" % path, plan_file(path, files[path], mode), apply_file)
    links = unit_links(doc) if present else {}
    for path in sorted(set((record or {}).get("links") or []) - set(links)):
        plan.add("link %s (removed)" % path, plan_link(path, None), apply_link)
    for path, target in sorted(links.items()):
        plan.add("link %s" % path, plan_link(path, target), apply_link)

    # ---- directories podnet.cluster creates, removed again by teardown when empty
    path = record_path(doc)
    # recorded: the ones an earlier run created; apply_node adds the ones this run's writers really create
    created = set(pristine.get("created_dirs") or [])
    if present:
        pristine["created_dirs"] = sorted(created)

    # ---- the record
    if present:
        plan.record = dict(version=DOCUMENT_VERSION, document=doc, files=sorted(files), links=sorted(links),
                           pristine=pristine, interpreter=sys.executable, bridge_mtu=mtu)
        text = json.dumps(plan.record, indent=1, sort_keys=True) + "\n"
        plan.record_change = plan_file(path, text, 0o600)
    else:
        plan.record_change = plan_file(path, None)
    plan.add("record %s" % path, plan.record_change, apply_file)
    # directories podnet.cluster created that nothing of it needs any more (a dropped runtime's, teardown)
    removing = [c["path"] for _n, c, _f in plan.parts
                if c["changed"] and c.get("path") and (c.get("content", "") is None or c.get("target", "") is None)]
    plan.add("directories", plan_dirs(sorted(created, key=len, reverse=True), removing), apply_dirs)
    return plan


ACCEPT_RA = re.compile(r"^net/ipv6/conf/([^/]+)/accept_ra$")


def ra_links(runner):
    """Links that learn from router advertisements now: an RA-learned route (default or other) goes out of them,
    or they hold a global address with a finite lifetime (SLAAC); a link whose accept_ra is 0 is left alone."""
    found = []
    for route in run_ip_json(runner, ["-6", "route", "show", "table", "all"], tolerate=True):
        if route_protocol(route) not in (9, "ra"):
            continue
        for dev in [route.get("dev")] + [nh.get("dev") for nh in route.get("nexthops") or []]:
            if dev and dev not in found:
                found.append(dev)
    for entry in run_ip_json(runner, ["-6", "addr", "show"], numeric=False, tolerate=True):
        for info in entry.get("addr_info") or []:
            if info.get("scope") == "global" and info.get("dynamic") and entry.get("ifname") not in found:
                found.append(entry.get("ifname"))
    out = []
    for dev in found:
        if dev and valid_ifname(dev) and read_live("net/ipv6/conf/%s/accept_ra" % dev, missing_ok=True) not in (
                None, "0"):
            out.append(dev)
    return out


def ra_settings(runner, settings, uplink=None, recorded=None):
    """accept_ra=2 on every link that learns from router advertisements, when podnet.cluster turns IPv6
    forwarding on: a forwarding host ignores advertisements on a link with accept_ra=1, and the kernel purges
    that link's RA-learned default routes the moment forwarding goes on.

    ``recorded`` (the settings of the node's record): a link that got accept_ra=2 keeps it until teardown, whatever
    its routes do meanwhile (a router outage must not make the node deaf to the router's return), as long as the
    link exists. With an uplink that moves into the bridge (``uplink``: the document's, fabric l2_bridge) the route
    is on the uplink before the move and on the bridge after it: both get the setting, so every run wants the same.
    """
    out = {}
    for key, value in (recorded or {}).items():
        match = ACCEPT_RA.match(canon_key(key))
        # the bridge of fabric l2_bridge may be missing now: this change creates it again
        if match and str(value) == "2" and (read_live(key, missing_ok=True) is not None
                                            or match.group(1) == (uplink or {}).get("bridge")):
            out["net/ipv6/conf/%s/accept_ra" % match.group(1)] = "2"
    if str(settings.get("net.ipv6.conf.all.forwarding")) != "1":
        return out
    devs = ra_links(runner)
    for dev in devs:
        out["net/ipv6/conf/%s/accept_ra" % dev] = "2"
    if devs and uplink:
        names = {uplink["bridge"], uplink.get("uplink")}
        names.add((_snapshot_uplink(uplink.get("snapshot_path")) or {}).get("uplink"))
        for dev in sorted(n for n in names if n):
            if valid_ifname(dev):
                out["net/ipv6/conf/%s/accept_ra" % dev] = "2"
    return out


def bridge_supported():
    """True when the kernel has (or can load) the bridge driver."""
    if os.path.isdir("/sys/module/bridge"):
        return True
    release = os.uname().release
    for name in ("/lib/modules/%s/modules.builtin" % release, "/lib/modules/%s/modules.dep" % release):
        text = read_text(name) if os.path.isfile(name) else None
        if text and "/bridge.ko" in text:
            return True
    return False


def plan_dirs(directories, removing=()):
    """Empty directories podnet.cluster created, removed deepest first (they are empty once ``removing`` goes)."""
    gone = set(removing)
    rm = []
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        left = [os.path.join(directory, e) for e in os.listdir(directory)]
        if all(e in gone or e in rm for e in left):
            rm.append(directory)
            gone.add(directory)
    return dict(changed=bool(rm), directories=rm,
                diff=dict(before="".join(d + "/\n" for d in rm), after="", before_header="directories",
                          after_header="directories"))


def apply_dirs(change):
    for directory in change["directories"]:
        try:
            os.rmdir(directory)
        except OSError:
            pass


def _read_json_quiet(path):
    try:
        return read_object(path)
    except EngineError:
        return None, None


def check_node(runner, plan):
    """Checks that need the kernel but write nothing: iptables-restore --test of every chain change."""
    for name, change, _func in plan.parts:
        if name.startswith("iptables") and change["changed"]:
            test_chains(runner, change)


def _record_created(plan, made):
    """The record with the directories created by this run (``made``) added to the recorded ones."""
    pristine = plan.record["pristine"]
    created = sorted(set(pristine.get("created_dirs") or []) | set(made))
    if created == pristine.get("created_dirs"):
        return
    pristine["created_dirs"] = created
    change = plan.record_change
    change["content"] = json.dumps(plan.record, indent=1, sort_keys=True) + "\n"
    change["changed"] = read_text(change["path"]) != change["content"]
    change["diff"]["after"] = change["content"]


def apply_node(plan, runner=None):
    """Apply every changed part in order; the record last. systemd re-reads changed units."""
    done, made = [], []
    for name, change, func in plan.parts:
        if change is plan.record_change and plan.record is not None:
            # the directories this run's writers created (the record's own too) join the recorded ones
            made.extend(make_dirs(os.path.dirname(change["path"])))
            _record_created(plan, made)
        if change["changed"]:
            try:
                func(change)
            except EngineError as exc:
                exc.details.setdefault("applied", done)
                exc.msg = "%s: %s (applied before it: %s)" % (name, exc.msg, ", ".join(done) or "nothing")
                raise
            done.append(name)
            made.extend(change.get("created_dirs") or [])
    units = [n for n in done if n.startswith("file ") and (".service" in n or ".conf" in n and "systemd" in n)]
    if units and runner is not None and os.path.isdir("/run/systemd/system"):
        rc, out, err = runner.run([runner.which("systemctl"), "daemon-reload"])
        if rc != 0:
            raise EngineError("systemctl daemon-reload failed: %s" % (err or out).strip())
    return done


def held(runner, doc, record):
    """What this node holds already: pod CIDRs of its record, and gateways on bridges inside the cluster."""
    recorded = list(((record or {}).get("document") or {}).get("pod_cidrs") or [])
    names = [doc["bridge"]["name"]]
    old = ((record or {}).get("document") or {}).get("bridge", {}).get("name")
    if old and old not in names:
        names.append(old)
    owned = [ipaddress.ip_network(c) for c in doc.get("owned_cidrs") or []]
    gateways = []
    for name in names:
        link, addrs, _dad = read_bridge(runner, name)
        if link is None:
            continue
        for iface in addrs:
            if any(iface.ip in net for net in owned):
                gateways.append(str(iface))
    return dict(recorded=recorded, gateways=gateways)


# --------------------------------------------------------------------------- #
# the restore program
# --------------------------------------------------------------------------- #

class RestoreReport(object):
    """What a restore did, part by part: changes, failures (in order), warnings."""

    def __init__(self):
        self.changes = {}
        self.failed = {}
        self.warnings = []

    @property
    def changed(self):
        return bool(self.changes)


def _restore_bridge(runner, doc, record, check):
    bridge = doc["bridge"]
    mtu, mtu_from = bridge.get("mtu"), bridge.get("mtu_from_address")
    warnings = []
    if mtu is None and doc.get("overlay"):
        try:
            mtu, mtu_from = bridge_mtu(runner, doc["overlay"]), None
        except EngineError as exc:
            mtu, mtu_from = record.get("bridge_mtu"), None
            warnings.append("bridge %s made with the MTU of the last run (%s): %s" % (bridge["name"], mtu, exc.msg))
    if mtu is None and mtu_from:
        try:
            resolve_mtu(runner, None, mtu_from, bridge["name"])
        except EngineError as exc:
            # the node IP is not on a link yet: the bridge and its gateways come first, with the MTU of the last run
            mtu, mtu_from = record.get("bridge_mtu"), None
            warnings.append("bridge %s made with the MTU of the last run (%s): %s" % (bridge["name"], mtu, exc.msg))
    owned = list(doc.get("owned_cidrs") or [])
    change = plan_bridge(runner, bridge["name"], bridge.get("addresses") or [], owned, mtu, mtu_from, "present",
                         owned_addresses=list(bridge.get("addresses") or []))
    warnings.extend(change.pop("warnings"))
    if change["changed"] and not check:
        apply_bridge(runner, change)
    return change, warnings


def _forwarding_first(key):
    """Order of the restore's sysctl writes: per-link settings (accept_ra) before forwarding goes on."""
    ck = canon_key(key)
    return (ck.endswith("/forwarding") or ck == "net/ipv4/ip_forward", ck)


def _restore_sysctl(runner, doc, record, check):
    """Every recorded live value, key by key (one that cannot be written does not stop the others)."""
    sysctl = doc.get("sysctl") or {}
    settings = validate_settings(sysctl.get("settings") or {})
    warnings, problems, to_write = [], [], []
    for key in sorted(settings, key=_forwarding_first):
        try:
            current = read_live(key)
        except EngineError as exc:
            problems.append(exc.msg)
            continue
        if current != settings[key]:
            to_write.append(key)
            if not check:
                try:
                    write_live(key, "/proc/sys/" + canon_key(key), settings[key])
                except EngineError as exc:
                    problems.append(exc.msg)
                    to_write.remove(key)
    found = find_conflicts(sysctl.get("file") or "", settings) if sysctl.get("file") else []
    if found:
        text = "; ".join(f["msg"] for f in found)
        if sysctl.get("conflicts", "fail") == "fail":
            problems.append("set anyway, but %s: the next sysctl --system undoes it. Remove those lines or make "
                            "them agree" % text)
        else:
            warnings.append(text)
    change = dict(changed=bool(to_write), changed_keys=to_write)
    if problems:
        raise EngineError("; ".join(problems), retry=any("does not exist" in p for p in problems), change=change)
    return change, warnings


def _restore_chains(runner, item, check):
    change = plan_chains(runner, int(item["ip_version"]), item["table"], item["chains"])
    if check and change["changed"]:
        test_chains(runner, change)
    elif change["changed"]:
        apply_chains(runner, change)
    return change, []


def _restore_routes(runner, doc, record, check):
    routes = doc["routes"]
    change = plan_routes(runner, routes.get("routes") or [], doc["node"], routes["protocol"],
                         routes.get("table", "main"), "present", diff=False, offlink="skip",
                         keep=(record.get("pristine") or {}).get("foreign_routes") or (),
                         skip_devs=overlay_devices(doc))
    if change["changed"] and not check:
        apply_routes(runner, change)
    if change.get("skipped"):
        raise EngineError("%d route(s) left out, their gateways are not on-link yet: %s"
                          % (len(change["skipped"]), "; ".join(change["skipped"][:10])), retry=True, change=change)
    return change, []


def _restore_overlay(runner, doc, check):
    """The devices (same MAC) and every peer's entries of fabric vxlan; a node IP not on a link yet is retried."""
    try:
        change = plan_overlay(runner, doc["overlay"], doc["node"], doc["routes"]["protocol"], "present", diff=False)
    except EngineError as exc:
        raise EngineError(exc.msg, retry="no link on this node holds" in exc.msg)
    if change["changed"] and not check:
        apply_overlay(runner, change)
    return change, []


def restore_parts(runner, record, check=False, wait=0):
    """[(name, function)] of the restore, in order: the bridge and its gateways first (Docker needs the bridge),
    then forwarding, the chains, the routes and the fabric's part (the overlay of vxlan, the uplink of l2_bridge).
    A function returns
    (change, warnings) or raises EngineError (``retry`` in its details: worth another try later at boot)."""
    doc = record["document"]
    parts = [("bridge %s" % doc["bridge"]["name"], lambda: _restore_bridge(runner, doc, record, check)),
             ("sysctl", lambda: _restore_sysctl(runner, doc, record, check))]
    for item in doc.get("iptables") or []:
        parts.append(("iptables IPv%d %s" % (int(item["ip_version"]), item["table"]),
                      lambda item=item: _restore_chains(runner, item, check)))
    parts.append(("routes", lambda: _restore_routes(runner, doc, record, check)))
    if doc.get("overlay"):
        parts.append(("overlay", lambda: _restore_overlay(runner, doc, check)))
    if doc.get("uplink"):
        def uplink():
            moved, summary = restore_uplink(runner, doc, check, wait)
            name, change = next(iter(summary.items())) if summary else ("uplink", {})
            return dict(change, changed=moved, _name=name), []
        parts.append(("uplink", uplink))
    return parts


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
                    report.changes[name] = _short(partial)
                if exc.details.get("retry"):
                    again.append((name, func))
                continue
            report.failed.pop(name, None)
            for warning in warnings:
                report.warnings.append(warning)
                log("podnet-restore: warning: %s" % warning)
            if change.get("changed"):
                report.changes[change.pop("_name", name)] = _short(change)
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
