# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Helpers for lab tests of whole runs: run a podnet.cluster playbook on a lab, snapshot everything of a node
podnet.cluster may touch, compare snapshots, and read which nodes the node task changed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Dict, Optional

from lib import rootns
from lib.labtools import BIN, Lab, recap, run, settled

# Files of the lab itself, or of the CNI plugins the verify probes run: not podnet.cluster's.
SKIP_FILES = ("var-lib/cni", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/init.d", "etc/systemd/system/"
              "podnet-lab")


def playbook(lab: Lab, name: str, *args: str, check: bool = True, **extra):
    argv = [str(BIN / "ansible-playbook"), "podnet.cluster.%s" % name, "-i", str(lab.hosts_yml)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    return run(argv + list(args), check=check, cwd=lab.repo)


def _kernel_made(text: str) -> str:
    """Without what the kernel makes anew for a re-created link: ifindexes, link-local addresses, DAD state."""
    lines = [re.sub(r"^\d+:\s+", "", line).replace(" tentative", "") for line in text.splitlines()
             if "fe80:" not in line and "anycast fe80::" not in line]
    return "\n".join(lines) + "\n"


def _without_empty_tables(text: str) -> str:
    """iptables-save text without tables that hold nothing (built-in chains, policy ACCEPT, no rule): reading or
    writing a table makes the kernel show it, which is no change in behaviour."""
    out, table = [], []
    for line in text.splitlines():
        if line.startswith("*"):
            table = [line]
        elif line == "COMMIT" and table:
            table.append(line)
            empty = all(l.startswith(":") and l.split()[1] == "ACCEPT" for l in table[1:-1])
            if not empty:
                out.extend(table)
            table = []
        elif table:
            table.append(line)
        elif line.strip():
            out.append(line)
    return "\n".join(out) + "\n"


def _lower_dir(rel: str) -> str:
    top, _unused, rest = rel.partition("/")
    return os.path.join({"etc": "/etc", "var-lib": "/var/lib"}.get(top, "/" + top), rest)


def record_path(lab: Lab, node: str) -> Path:
    """Where a lab node's podnet.cluster record (/etc/podnet/node.json) lies: in its overlay's upper layer."""
    return Path(lab.node_root(node), "upper/etc/podnet/node.json")


def node_state(lab: Lab, node: str) -> Dict[str, str]:
    """Everything of a node that podnet.cluster may touch: network state and its files (by content)."""
    snap = rootns.snapshot(node)
    for key in ("ip -o addr", "ip route show table all", "ip -6 route show table all"):
        snap[key] = _kernel_made(snap[key])
    # nft lists chains in creation order; iptables-save and ip6tables-save (compared) list them canonically
    del snap["nft list ruleset"]
    for key in ("iptables-save", "ip6tables-save"):
        snap[key] = _without_empty_tables(snap[key])
    files = rootns.files_snapshot(os.path.join(lab.node_root(node), "upper"), skip=SKIP_FILES + ("run",))
    # a directory of the machine's own tree shows in the node's upper layer once a file was written in it
    files = {rel: v for rel, v in files.items() if not (v.startswith("dir ") and os.path.isdir(_lower_dir(rel)))}
    record = files.pop("etc/podnet/node.json", None)
    snap["files"] = "".join("%s %s\n" % kv for kv in sorted(files.items()))
    if record:
        data = json.loads(record_path(lab, node).read_text())
        data["document"].pop("allow_readdress", None)   # a run's permission, not the node's state
        snap["record document"] = json.dumps(data["document"], indent=1, sort_keys=True)
    return snap


def assert_same(before: Dict[str, str], after: Dict[str, str], what: str):
    changes = rootns.diff(before, after)
    assert changes == "", "%s:\n%s" % (what, changes[:6000])


def pristine_states(lab: Lab, settle: float = 30.0) -> Dict[str, Dict[str, str]]:
    """Every node's state (``node_state``) as the lab built it, once its IPv6 addresses settled (none tentative)."""
    settled(lab.nodes, settle)
    return {n: node_state(lab, n) for n in lab.nodes}


def torn_down(lab: Lab, pristine: Dict[str, Dict[str, str]], teardown: Optional[Callable[[], object]] = None,
              elsewhere: Optional[Callable[[], str]] = None) -> Dict[str, Dict[str, str]]:
    """Every node as ``pristine`` (``pristine_states``: the lab as built), with a teardown only where the lab is
    not so: the lab as built, and a test that ended with a teardown (each asserts what it left), need none.

    ``teardown`` runs the teardown (default: podnet.cluster.teardown on the lab's inventory); ``elsewhere`` says
    what of the cluster is left outside the nodes (the routes of a router, say), "" for nothing: something there
    calls for a teardown too, and must be gone after it. Asserts every node pristine afterwards; returns the
    nodes' states."""
    states = {n: node_state(lab, n) for n in lab.nodes}
    if any(rootns.diff(pristine[n], states[n]) for n in lab.nodes) or (elsewhere and elsewhere()):
        if teardown is None:
            playbook(lab, "teardown")
        else:
            teardown()
        states = {n: node_state(lab, n) for n in lab.nodes}
        left = elsewhere() if elsewhere else ""
        assert not left, "the teardown left %s" % left
    for node in lab.nodes:
        assert_same(pristine[node], states[node], "the lab is not as built: %s differs after a teardown" % node)
    return states


def node_changes(stdout: str):
    """Hosts the node task (apply) reported as changed: the plan's own state-file write does not count."""
    section = stdout.split("Pod network of this node", 1)[1].split("\nTASK ", 1)[0] if "Pod network of this node" \
        in stdout else ""
    return re.findall(r"^changed: \[([^\]]+)\]", section, re.M)


def unchanged(proc) -> bool:
    return all(c["changed"] == 0 and c["failed"] == 0 for c in recap(proc.stdout).values())
