# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Reconcile the lab's network with its desired state (module_utils/lab_topology.py's desired_state): namespaces,
veth pairs, bridges, addresses, routes, the router's sysctls, the permanent neighbour entries of the hosts on the
switch, and each emulated host's overlay layers and files; with the facts its --diff shows.
"""

from __future__ import annotations

import ipaddress
import os
import shutil

from ansible_collections.podnet.lab.plugins.module_utils.lab_machine import write_file
from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import (
    OVERLAY_LAYERS,
    LabError,
)


def render(facts):
    return "".join(line + "\n" for line in sorted(facts))


def desired_facts(want, files):
    facts = set()
    for ns in want["namespaces"]:
        facts.add("netns %s" % ns)
    peers = {}
    for a_ns, a, b_ns, b in want["veths"]:
        peers[(a_ns, a)] = "%s/%s" % (b_ns, b)
        peers[(b_ns, b)] = "%s/%s" % (a_ns, a)
    for (ns, name), spec in want["links"].items():
        facts.add(_link_fact(ns, name, spec["kind"], peers.get((ns, name)), spec["master"], spec["alias"], True))
        for addr in spec["addrs"]:
            facts.add("%s: addr %s %s" % (ns, name, addr))
    for ns, family, dst, via in want["routes"]:
        facts.add("%s: route -%d %s via %s" % (ns, family, dst, via))
    for ns, values in want["sysctls"].items():
        for key, value in values.items():
            facts.add("%s: sysctl %s=%s" % (ns, key, value))
    for ns, entries in (want.get("neighbours") or {}).items():
        if entries:
            facts.add(neighbour_fact(ns, len(entries)))
    for host, spec in files.items():
        for rel, _content in spec["files"].items():
            facts.add("file %s/upper/%s" % (spec["root"], rel))
        for rel in spec["opaque"]:
            facts.add("opaque %s/upper/%s" % (spec["root"], rel))
    return facts


def _link_fact(ns, name, kind, peer, master, alias, up):
    parts = ["%s: link %s %s" % (ns, name, kind)]
    if peer:
        parts.append("peer %s" % peer)
    if master:
        parts.append("master %s" % master)
    if alias:
        parts.append("alias %s" % alias)
    parts.append("up" if up else "down")
    return " ".join(parts)


def reconcile(lab, topo, want, files, recorded_nodes):
    """Bring the machine to ``want``; return (before facts, after facts)."""
    read_families = [4, 6]
    ip = lab.ip
    before = set()
    current = {}

    # 0. nodes that left the list
    gone = [n for n in recorded_nodes if n not in topo["node_names"]]
    killed = []
    if gone:
        procs = lab.lab_processes(gone, ["%s/%s" % (topo["root"], n) for n in gone])
        killed.extend(procs)
        lab.kill(procs)
        for node in gone:
            if lab.netns_state(node) != "missing":
                lab.run_change([ip, "netns", "delete", node])
            node_dir = "%s/%s" % (topo["root"], node)
            if os.path.isdir(node_dir):
                lab.note("remove %s" % node_dir)
                if not lab.check:
                    shutil.rmtree(node_dir)

    # 1. namespaces
    for ns in want["namespaces"]:
        state = lab.netns_state(ns)
        if state == "ok":
            before.add("netns %s" % ns)
            current[ns] = lab.read_ns(ns, read_families)
            continue
        if state == "stale":
            lab.run_change([ip, "netns", "delete", ns])
        lab.run_change([ip, "netns", "add", ns])
        current[ns] = {"links": {}, "routes": []}

    # facts of what is there now (for --diff)
    pairs_ok = set()
    for a_ns, a, b_ns, b in want["veths"]:
        la = current[a_ns]["links"].get(a)
        lb = current[b_ns]["links"].get(b)
        if (la and lb and la["kind"] == "veth" and lb["kind"] == "veth" and la["peer_elsewhere"]
                and lb["peer_elsewhere"] and la["link_index"] == lb["ifindex"] and lb["link_index"] == la["ifindex"]):
            pairs_ok.add((a_ns, a))
            pairs_ok.add((b_ns, b))
    peers = {}
    for a_ns, a, b_ns, b in want["veths"]:
        peers[(a_ns, a)] = "%s/%s" % (b_ns, b)
        peers[(b_ns, b)] = "%s/%s" % (a_ns, a)
    for ns in want["namespaces"]:
        for name, info in current[ns]["links"].items():
            owned = (ns, name) in want["links"] or ns in (topo["switch"],)
            if not owned:
                continue
            peer = peers.get((ns, name)) if (ns, name) in pairs_ok else None
            master, addrs = info["master"], list(info["addrs"])
            if ns in topo["node_names"] and master and (ns, name) in want["links"] \
                    and not want["links"][(ns, name)]["master"]:
                # uplink moved into a bridge: the lab does not own that, and counts its addresses as eth0's
                wanted = set(want["links"][(ns, name)]["addrs"])
                addrs += [a for a in current[ns]["links"].get(master, {}).get("addrs", []) if a in wanted]
                master = None
            before.add(_link_fact(ns, name, info["kind"], peer, master, info["alias"], info["up"]))
            for addr in addrs:
                before.add("%s: addr %s %s" % (ns, name, addr))
        for rt in current[ns]["routes"]:
            if rt["protocol"] == "ra":
                continue  # learned from the router's advertisements, not made by the lab
            if rt["via"] and (ns in topo["node_names"] and rt["dst"] == "default" or ns == topo["external"]):
                before.add("%s: route -%d %s via %s" % (ns, rt["family"], rt["dst"], rt["via"]))

    # 2. links: the switch holds only what the lab wants
    sw = topo["switch"]
    for name in sorted(current[sw]["links"]):
        if (sw, name) not in want["links"]:
            lab.delete_link(sw, name)
            current[sw]["links"].pop(name)
    structural = False
    for name in [n for (ns, n), spec in sorted(want["links"].items()) if ns == sw and spec["kind"] == "bridge"]:
        bridge = current[sw]["links"].get(name)
        if bridge is None or bridge["kind"] != "bridge":
            if bridge is not None:
                lab.run_change([ip, "-n", sw, "link", "delete", name])
            lab.run_change([ip, "-n", sw, "link", "add", name, "type", "bridge"])
            current[sw]["links"].pop(name, None)
            structural = True
    for a_ns, a, b_ns, b in want["veths"]:
        if (a_ns, a) in pairs_ok:
            continue
        for ns, name in ((a_ns, a), (b_ns, b)):
            # Deleting one end of a veth deletes its peer too: look again before each delete.
            if name in current[ns]["links"] and (lab.check or lab.link_exists(ns, name)):
                lab.delete_link(ns, name)
            current[ns]["links"].pop(name, None)
        lab.run_change([ip, "-n", a_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns])
        structural = True
    if structural and not lab.check:
        for ns in want["namespaces"]:
            current[ns] = lab.read_ns(ns, read_families)
    empty = {"kind": None, "master": None, "alias": None, "up": False, "addrs": []}

    # 3. link settings and addresses
    for (ns, name), spec in want["links"].items():
        info = current[ns]["links"].get(name) or dict(empty)
        if spec["master"] and info["master"] != spec["master"]:
            lab.run_change([ip, "-n", ns, "link", "set", name, "master", spec["master"]])
        if spec["alias"] and info["alias"] != spec["alias"]:
            lab.run_change([ip, "-n", ns, "link", "set", name, "alias", spec["alias"]])
        have_here = set(info["addrs"])
        have = set(have_here)
        if ns in topo["node_names"] and info.get("master") and not spec["master"]:
            # The node's uplink was moved into a bridge (podnet.cluster.uplink_bridge): its
            # addresses live on the bridge now and count as the node's.
            have |= set(current[ns]["links"].get(info["master"], {}).get("addrs", []))
        wanted = set(spec["addrs"])
        for addr in sorted(have_here - wanted):
            lab.run_change([ip, "-n", ns, "addr", "del", addr, "dev", name])
        for addr in sorted(wanted - have):
            extra = ["nodad"] if ":" in addr else []
            lab.run_change([ip, "-n", ns, "addr", "add", addr, "dev", name] + extra)
        if not info["up"]:
            lab.run_change([ip, "-n", ns, "link", "set", name, "up"])

    # 4. routes
    wanted_routes = {}
    for ns, family, dst, via in want["routes"]:
        wanted_routes.setdefault(ns, {})[(family, dst)] = via
    for ns, family, dst, via in want["routes"]:
        have = [r for r in current[ns]["routes"] if r["family"] == family and r["dst"] == dst]
        if not (len(have) == 1 and have[0]["via"] == via):
            dev = "eth0"
            lab.run_change([ip, "-n", ns, "-%d" % family, "route", "replace", dst, "via", via, "dev", dev])
    for node in topo["node_names"]:
        # A default route of a family the lab no longer has (subnet_ipv6 dropped).
        for rt in current[node]["routes"]:
            if rt["protocol"] == "ra" and topo["router_advertisements"]:
                continue  # learned from the router's advertisements
            if rt["dst"] == "default" and rt["via"] and (rt["family"], "default") not in wanted_routes.get(node, {}):
                lab.run_change([ip, "-n", node, "-%d" % rt["family"], "route", "del", "default", "via", rt["via"]])
    ex = topo["external"]
    for rt in current[ex]["routes"]:
        if rt["protocol"] == "kernel" or rt["type"] != "unicast":
            continue
        if wanted_routes.get(ex, {}).get((rt["family"], rt["dst"])) == rt["via"]:
            continue
        lab.run_change([ip, "-n", ex, "-%d" % rt["family"], "route", "del", rt["dst"]]
                       + (["via", rt["via"]] if rt["via"] else []))

    # 5. sysctls, in the router's namespace only
    for ns, values in want["sysctls"].items():
        have = lab.read_sysctls(ns, sorted(values)) if lab.netns_state(ns) == "ok" else {}
        for key, value in sorted(values.items()):
            if have.get(key) == value:
                before.add("%s: sysctl %s=%s" % (ns, key, value))
                continue
            lab.run_change([ip, "netns", "exec", ns, "sysctl", "-q", "-w", "%s=%s" % (key, value)])

    # 6. permanent neighbour entries between the hosts on the switch (see switch_neighbours)
    reconcile_neighbours(lab, topo, want, before)
    return before, killed


def neighbour_fact(ns, count):
    return "%s: permanent neighbours for the %d underlay addresses of the other hosts on the switch" % (ns, count)


def reconcile_neighbours(lab, topo, want, before):
    """Make each switch host's permanent neighbour entries those of ``want["neighbours"]``, one ``ip -batch``
    per host that needs a change; remove permanent entries of the lab's subnets that are not wanted."""
    wanted = want.get("neighbours") or {}
    subnets = [ipaddress.ip_network(n) for n in (topo["subnet"], topo.get("subnet_ipv6")) if n]
    hosts = list(wanted) or [topo["router"]] + list(topo["node_names"])
    macs, devs = {}, {}
    for ns in hosts:
        if lab.netns_state(ns) != "ok":
            continue
        links = lab.ip_json(ns, "link", "show", "dev", "eth0") if lab.link_exists(ns, "eth0") else []
        if links:
            macs[ns] = links[0].get("address")
            # an uplink moved into a bridge: the node's addresses (and its neighbours) live on the bridge
            devs[ns] = links[0].get("master") or "eth0"
    for ns in hosts:
        entries = wanted.get(ns, {})
        if ns not in devs:
            if entries:
                lab.note("ip -n %s neigh replace ... nud permanent (%d addresses)" % (ns, len(entries)))
            continue
        dev = devs[ns]
        have = {}
        for entry in lab.ip_json(ns, "neigh", "show", "nud", "permanent"):
            if entry.get("dst") and entry.get("dev"):
                have[(entry["dst"], entry["dev"])] = (entry.get("lladdr") or "").lower()
        lines = []
        for addr, peer in sorted(entries.items()):
            mac = (macs.get(peer) or "").lower()
            if not mac:
                continue
            if have.get((addr, dev)) != mac:
                lines.append("neigh replace %s lladdr %s dev %s nud permanent" % (addr, mac, dev))
        for (addr, on_dev), _mac in sorted(have.items()):
            try:
                ours = any(ipaddress.ip_address(addr) in net for net in subnets)
            except ValueError:
                ours = False
            if ours and not (on_dev == dev and addr in entries):
                lines.append("neigh del %s dev %s" % (addr, on_dev))
        if not lines:
            if entries:
                before.add(neighbour_fact(ns, len(entries)))
            continue
        lab.note("ip -n %s -batch: %s" % (ns, "; ".join(lines[:3]) + (" ... (%d commands)" % len(lines)
                                                                      if len(lines) > 3 else "")))
        if not lab.check:
            rc, out, err = lab.run([lab.ip, "-n", ns, "-batch", "-"], data=("\n".join(lines) + "\n").encode())
            if rc != 0:
                raise LabError("ip -n %s -batch (neighbours) failed (rc=%d): %s" % (ns, rc, (err or out).strip()))


def prepare_files(lab, files, before):
    for host, spec in files.items():
        root = spec["root"]
        dirs = ["%s/upper/%s" % (root, layer) for layer in OVERLAY_LAYERS]
        dirs += ["%s/work/%s" % (root, layer) for layer in OVERLAY_LAYERS]
        for d in dirs:
            if not os.path.isdir(d):
                lab.note("mkdir %s" % d)
                if not lab.check:
                    os.makedirs(d, mode=0o755, exist_ok=True)
        for rel, content in sorted(spec["files"].items()):
            path = "%s/upper/%s" % (root, rel)
            try:
                with open(path) as fh:
                    same = fh.read() == content
            except OSError:
                same = False
            if same:
                before.add("file %s" % path)
                continue
            lab.note("write %s" % path)
            if not lab.check:
                write_file(path, content)
        for rel in spec["opaque"]:
            path = "%s/upper/%s" % (root, rel)
            try:
                opaque = os.getxattr(path, "trusted.overlay.opaque") == b"y"
            except OSError:
                opaque = False
            if opaque:
                before.add("opaque %s" % path)
                continue
            lab.note("make %s an opaque overlay directory (hides the machine's %s)" % (path, "/" + rel))
            if not lab.check:
                os.makedirs(path, mode=0o755, exist_ok=True)
                os.setxattr(path, "trusted.overlay.opaque", b"y")


# --------------------------------------------------------------------------
