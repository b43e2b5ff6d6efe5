# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Build or remove the whole lab (states present and absent of podnet.lab.lab_topology): the lab's record
(lab.json) first, then the network (module_utils/lab_reconcile.py), the hosts' files, and the services (SSH,
router advertisements); absent stops the lab's processes and removes its namespaces and directory.
"""

from __future__ import annotations

import json
import os
import shutil

from ansible_collections.podnet.lab.plugins.module_utils.lab_machine import write_file
from ansible_collections.podnet.lab.plugins.module_utils.lab_ra import (
    ra_reconcile,
    ra_remove,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_reconcile import (
    desired_facts,
    prepare_files,
    reconcile,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_services import ra_files
from ansible_collections.podnet.lab.plugins.module_utils.lab_ssh import (
    ssh_facts,
    ssh_reconcile,
    ssh_remove,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import (
    STATE_FILE,
    STATE_VERSION,
    LabError,
    desired_state,
    host_files,
)


def read_record(root, name):
    """The lab's record in ``root``; {} when there is none. Raise LabError if root belongs to something else."""
    path = os.path.join(root, STATE_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise LabError("%s: unreadable lab record (%s); remove it by hand if this is not a lab" % (path, exc))
        if not isinstance(data, dict) or data.get("podnet_lab") != name:
            raise LabError("%s belongs to lab %r, not %r; refusing to touch it"
                           % (path, data.get("podnet_lab") if isinstance(data, dict) else data, name))
        return data
    if os.path.isdir(root) and os.listdir(root):
        raise LabError("%s exists, is not empty and holds no %s: it was not made by this module; "
                       "refusing to use or remove it (choose another root)" % (root, STATE_FILE))
    if os.path.exists(root) and not os.path.isdir(root):
        raise LabError("%s exists and is not a directory" % root)
    return {}


def present(module, lab, topo):
    want = desired_state(topo)
    files = host_files(topo, module.params["hide_services"])
    record = read_record(topo["root"], topo["name"])
    if module.params["inventory_vars"] is None:
        # not given: the lab keeps the variables it was last given
        topo["inventory_vars"] = dict(record.get("inventory_vars") or {})
    wanted_record = {
        "podnet_lab": topo["name"],
        "version": STATE_VERSION,
        "nodes": list(topo["node_names"]),
        "namespaces": list(want["namespaces"]),
        "inventory_vars": topo["inventory_vars"],
    }
    before = set()
    if record:
        before.add("record %s/%s" % (topo["root"], STATE_FILE))
    # The record goes first: it marks the directory as the lab's even if the run is interrupted.
    if record != wanted_record:
        lab.note("write %s/%s" % (topo["root"], STATE_FILE))
        if not lab.check:
            os.makedirs(topo["root"], mode=0o755, exist_ok=True)
            merged = dict(wanted_record)
            # Remember nodes being replaced until they are removed below.
            merged["nodes"] = list(dict.fromkeys(list(record.get("nodes", [])) + list(topo["node_names"])))
            write_file(os.path.join(topo["root"], STATE_FILE), json.dumps(merged, indent=1) + "\n")
    before_net, killed = reconcile(lab, topo, want, files, record.get("nodes", []))
    before |= before_net
    prepare_files(lab, files, before)
    if topo["ssh"]:
        ssh_reconcile(lab, topo, before)
    else:
        killed += ssh_remove(lab, topo, topo["node_names"], before)
    if topo["router_advertisements"]:
        ra_reconcile(lab, topo, before)
    else:
        killed += ra_remove(lab, topo, before)
    if not lab.check and record != wanted_record:
        write_file(os.path.join(topo["root"], STATE_FILE), json.dumps(wanted_record, indent=1) + "\n")
    after = desired_facts(want, files) | {"record %s/%s" % (topo["root"], STATE_FILE)} | ssh_facts(topo)
    if topo["router_advertisements"]:
        spec = ra_files(topo)
        after |= {"file %s" % spec["program"], "file %s" % spec["settings"],
                  "router advertisements %s eth0" % topo["router"]}
    return before, after, killed, want


def absent(module, lab, topo):
    record = read_record(topo["root"], topo["name"])
    names = [topo["switch"], topo["router"], topo["external"]]
    # the recorded nodes and the ones asked for, each once (a node in both is removed once, listed once)
    nodes = list(dict.fromkeys(n for n in list(record.get("nodes", [])) + list(topo["node_names"]) if n not in names))
    names += nodes
    before = set()
    stopped = ssh_remove(lab, topo, nodes, before)
    if os.path.isdir(topo["root"]):
        stopped += ra_remove(lab, topo, before)
    procs = stopped + lab.lab_processes(names, [topo["root"]])
    lab.kill(procs)
    for ns in names:
        state = lab.netns_state(ns)
        if state != "missing":
            before.add("netns %s" % ns)
            lab.run_change([lab.ip, "netns", "delete", ns])
    if os.path.lexists(topo["root"]):
        before.add("directory %s" % topo["root"])
        lab.note("remove %s" % topo["root"])
        if not lab.check:
            shutil.rmtree(topo["root"])
    return before, set(), procs, names
