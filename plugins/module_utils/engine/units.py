# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The boot unit, the Docker drop-in and the restore program they run: the units' text, and the packaging of
the engine's own files into ``<lib_dir>`` (the program ``podnet-restore`` and ``lib/``, the modules it imports).

Standard library only (Python 3.8+).
"""

from __future__ import annotations

import os
import sys

from ansible_collections.podnet.cluster.plugins.module_utils.engine.record import record_path
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError

UNIT_NAME = "podnet-cluster.service"
DOCKER_DROPIN = "docker.service.d/10-podnet-cluster.conf"
RESTORE_NAME = "podnet-restore"
_PKG = "ansible_collections.podnet.cluster.plugins.module_utils"
# The files of the boot-time restore program besides the parts (engine.parts lists those): these modules, as the
# node module loaded them.
LIB_MODULES = tuple(_PKG + "." + name for name in (
    "engine", "engine.runner", "engine.lock", "engine.record", "engine.files", "engine.units", "engine.plan",
    "engine.node", "engine.restore", "engine.bridge", "engine.chains", "engine.jsonfile", "engine.overlay",
    "engine.overlay_node", "engine.addrs", "engine.routes",
    "engine.sysctl", "fileutil", "ifname", "iproute", "iptables", "text"))
RESTORE_SCRIPT = """#!%(interpreter)s
# Managed by podnet.cluster: restores this node's pod network (bridge, addresses, forwarding, chains, routes,
# the uplink of fabric l2_bridge) from the record written by the last Ansible run, part by part: a part that
# fails is reported (stderr, exit status 1) and the parts after it still run. Run by podnet-cluster.service at
# boot and after Docker starts. Usage: podnet-restore [--check] [--wait SECONDS] [--lock-timeout SECONDS] RECORD
import os
import sys

# No __pycache__ beside the program: its files stay exactly those the node module wrote (and teardown removes).
sys.dont_write_bytecode = True
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
    package = hasattr(sys.modules.get(name), "__path__")
    return name.replace(".", "/") + ("/__init__.py" if package else ".py")


def lib_modules(doc):
    """The modules of the restore program for ``doc``: LIB_MODULES, the parts, and what a part needs besides."""
    # imported here, not above: the parts import this module
    from ansible_collections.podnet.cluster.plugins.module_utils.engine import parts
    names = list(LIB_MODULES) + [parts.__name__]
    for part in parts.PARTS:
        names.append(part.__name__)
        names.extend(part.lib_modules(doc) if hasattr(part, "lib_modules") else ())
    return names


def lib_paths(doc):
    base = os.path.join(doc["lib_dir"], "lib")
    return [os.path.join(doc["lib_dir"], RESTORE_NAME)] + [os.path.join(base, _lib_rel(n)) for n in lib_modules(doc)]


def lib_files(doc, interpreter=None):
    """{path: content} of the restore program and the engine files it runs."""
    base = os.path.join(doc["lib_dir"], "lib")
    files = {os.path.join(doc["lib_dir"], RESTORE_NAME): RESTORE_SCRIPT % {"interpreter": interpreter or
                                                                           sys.executable}}
    for name in lib_modules(doc):
        files[os.path.join(base, _lib_rel(name))] = module_source(name)
    return files
