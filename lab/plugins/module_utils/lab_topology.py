# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The lab's topology as data: pure functions, standard library only.

Shared by the module podnet.lab.lab_topology (which builds it) and the
filter podnet.lab.lab_input_errors (which checks the role's inputs on the
controller), so that names, addresses and host numbers are defined once.
The services' files and texts (sshd, router advertisements) are in
module_utils/lab_services.py and re-exported here.
"""

from __future__ import annotations

import ipaddress
import os
import re

from ansible_collections.podnet.lab.plugins.module_utils import code_cache_hook
from ansible_collections.podnet.lab.plugins.module_utils.lab_services import (
    NETNS_DIR,
    RA_INTERVAL,
    RA_LIFETIME,
    SSH_DIR,
    SSH_KEY,
    ssh_host_vars,
)
# re-exported: the services' files, by the names the lab's callers know
from ansible_collections.podnet.lab.plugins.module_utils.lab_services import (  # noqa: F401 pylint: disable=unused-import
    ra_files,
    sshd_files,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
OVERLAY_LAYERS = ("etc", "var-lib", "run")
MACHINE_DIRS = ("/etc", "/var/lib", "/run", "/proc", "/sys", "/dev")
STATE_FILE = "lab.json"
STATE_VERSION = 1
BRIDGE = "br0"
ROUTER_PORT = "rtr"
CONTROLLER_PORT = "ctl"
FIRST_NODE_HOST = 11
ROUTER_HOST = 1
CONTROLLER_HOST = 2
EXTERNAL_HOST = 10
ROUTER_SYSCTLS_V4 = {"net.ipv4.ip_forward": "1"}
ROUTER_SYSCTLS_V6 = {"net.ipv6.conf.all.forwarding": "1"}
HOSTS_HEADER = "# Written by podnet.lab.lab_topology for this emulated host.\n"


class LabError(Exception):
    """A problem found before any change, or a failed command."""


# --------------------------------------------------------------------------
# desired topology


def v6_host(net, host):
    """The IPv6 address of ``net`` whose last group reads like the decimal IPv4 host number."""
    return net.network_address + int(str(host), 16)


def _network(value, what, version, errors):
    if value in (None, ""):
        return None
    try:
        net = ipaddress.ip_network(str(value).strip(), strict=True)
    except ValueError as exc:
        errors.append("%s: %r is not a network in CIDR form without host bits (%s)" % (what, value, exc))
        return None
    if net.version != version:
        errors.append("%s: %s is not an IPv%d network" % (what, value, version))
        return None
    return net


def code_cache_error(value, label="code_cache"):
    """Why ``value`` cannot be the nodes' compile cache directory, prefixed with ``label`` (the input's name), or
    None; unset (None or empty) is the lab's own. The rule is the connection's (``code_cache_hook``)."""
    if value in (None, ""):
        return None
    problem = code_cache_hook.cache_dir_problem(value)
    return None if problem is None else "%s: %s" % (label, problem)


def _check_root(root, errors):
    if not root or not root.startswith("/"):
        errors.append("root: %r is not an absolute path" % (root,))
        return None
    clean = os.path.normpath(root)
    if clean == "/":
        errors.append("root: '/' cannot be the lab directory")
        return None
    for char in (",", ":", "\\", "\n"):
        if char in clean:
            errors.append("root: %s contains %r, which an overlay mount option cannot carry" % (clean, char))
            return None
    for machine_dir in MACHINE_DIRS:
        if clean == machine_dir or clean.startswith(machine_dir + "/"):
            errors.append("root: %s is inside %s, which the lab overlays or which is not a real "
                          "directory; use one elsewhere, e.g. under /var/tmp" % (clean, machine_dir))
            return None
    return clean


def build_topology(params):
    """Validate the parameters and return the desired lab as plain data; raise LabError with every problem."""
    errors = []
    name = params["name"]
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 40:
        errors.append("name: %r must start with a letter or digit, hold only letters, digits, '.' and '-', "
                      "and have at most 40 characters" % (name,))
    if params.get("nodes") is not None:
        nodes = [str(n) for n in params["nodes"]]
    elif params.get("node_count") is not None:
        count = params["node_count"]
        if count < 1 and params["state"] == "present":
            errors.append("node_count: %d; a lab needs at least one node" % count)
        nodes = ["%s-node%d" % (name, i) for i in range(1, max(count, 0) + 1)]
    else:
        nodes = []
    if params["state"] == "present" and not nodes and not errors:
        errors.append("nodes/node_count: a lab needs at least one node")
    infra = {"switch": "%s-sw" % name, "router": "%s-router" % name, "external": "%s-ext" % name,
             "controller": "%s-ctl" % name}
    seen = set()
    for node in nodes:
        if not NAME_RE.match(node) or len(node) > 63:
            errors.append("nodes: %r is not a usable node name (letters, digits, '.', '-'; at most 63 characters; "
                          "it is also the host name and namespace name)" % node)
        if node in seen:
            errors.append("nodes: %s is listed twice" % node)
        if node in infra.values():
            errors.append("nodes: %s is the name of the lab's own %s namespace"
                          % (node, [k for k, v in infra.items() if v == node][0]))
        seen.add(node)

    subnet = _network(params["subnet"], "subnet", 4, errors)
    subnet6 = _network(params.get("subnet_ipv6"), "subnet_ipv6", 6, errors)
    count = 1 if params.get("segments") is None else params["segments"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        errors.append("segments: %r is not a number of segments (1 or more)" % (count,))
        count = 1
    seg4 = _segments(subnet, count, "subnet", errors) if subnet is not None else None
    seg6 = _segments(subnet6, count, "subnet_ipv6", errors) if subnet6 is not None else None
    # node i sits on segment i mod count, as the (i div count)-th node there
    placement = [(index % count, index // count) for index in range(len(nodes))]
    per_segment = max([slot for _seg, slot in placement] + [-1]) + 1
    ext = _network(params["external_cidr"], "external_cidr", 4, errors)
    ext6 = _network(params.get("external_cidr_ipv6"), "external_cidr_ipv6", 6, errors)
    if params["subnet"] in (None, ""):
        errors.append("subnet: an IPv4 underlay network is required")
    if params["external_cidr"] in (None, ""):
        errors.append("external_cidr: an IPv4 external network is required")
    if ext6 is not None and params.get("subnet_ipv6") in (None, ""):
        errors.append("external_cidr_ipv6: %s is set but subnet_ipv6 is not; the external host "
                      "would have no IPv6 node network to route to" % ext6)
    last_host = FIRST_NODE_HOST + per_segment - 1
    if seg4 and nodes and last_host > seg4[0].num_addresses - 2:
        errors.append(
            "subnet: %s (%s) holds hosts .1 to .%d; %d node(s) from .%d need up to .%d: use a shorter prefix or "
            "fewer nodes" % (seg4[0], "one of %d segments" % count if count > 1 else "the only segment",
                             seg4[0].num_addresses - 2, per_segment, FIRST_NODE_HOST, last_host)
        )
    if seg6 and nodes and int(str(last_host), 16) > seg6[0].num_addresses - 1:
        errors.append("subnet_ipv6: %s is too small for %d node(s) per segment (last address ::%d)"
                      % (seg6[0], per_segment, last_host))
    for net, what in ((ext, "external_cidr"), (ext6, "external_cidr_ipv6")):
        if net is not None and net.num_addresses - 2 < EXTERNAL_HOST:
            errors.append("%s: %s is too small for the router (host 1) and the external host (host 10); "
                          "use /28 or shorter" % (what, net))
    for a, b, wa, wb in ((subnet, ext, "subnet", "external_cidr"), (subnet6, ext6, "subnet_ipv6", "external_cidr_ipv6")):
        if a is not None and b is not None and a.overlaps(b):
            errors.append("%s %s overlaps %s %s" % (wa, a, wb, b))
    advertise = bool(params.get("router_advertisements"))
    if advertise and params.get("subnet_ipv6") in (None, ""):
        errors.append("router_advertisements: the router advertises an IPv6 default route, but subnet_ipv6 is not "
                      "set (no IPv6 underlay)")
    ra_interval = params.get("ra_interval", RA_INTERVAL)
    ra_lifetime = params.get("ra_lifetime", RA_LIFETIME)
    if isinstance(ra_interval, bool) or not isinstance(ra_interval, int) or not 1 <= ra_interval <= 1800:
        errors.append("ra_interval: %r is not a number of seconds from 1 to 1800" % (ra_interval,))
    if isinstance(ra_lifetime, bool) or not isinstance(ra_lifetime, int) or not 0 <= ra_lifetime <= 9000:
        errors.append("ra_lifetime: %r is not a router lifetime in seconds from 0 to 9000 (RFC 4861)"
                      % (ra_lifetime,))
    root = params.get("root") or ("/var/tmp/podnet-lab/%s" % name)
    root = _check_root(root, errors)
    code_cache = params.get("code_cache") or None
    cache_error = code_cache_error(code_cache)
    if cache_error:
        errors.append(cache_error)
    if errors:
        raise LabError("\n".join(errors))

    topo = {
        "name": name,
        "root": root,
        # the nodes' compile cache: the lab's own, or a directory several labs share (never removed with the lab)
        "code_cache": os.path.normpath(code_cache) if code_cache else "%s/code-cache" % root,
        "switch": infra["switch"],
        "router": infra["router"],
        "external": infra["external"],
        "controller": infra["controller"],
        "ssh": bool(params.get("ssh")),
        "static_neighbours": bool(params.get("static_neighbours", True)),
        "node_ip": params.get("node_ip", True) is not False,
        "router_advertisements": advertise,
        "ra_interval": ra_interval,
        "ra_lifetime": ra_lifetime,
        "node_names": nodes,
        "nodes": {},
        "subnet": str(subnet),
        "subnet_ipv6": str(subnet6) if subnet6 else None,
        "external_cidr": str(ext),
        "external_cidr_ipv6": str(ext6) if ext6 else None,
    }
    topo["segments"] = [{
        "subnet": str(seg4[k]), "subnet_ipv6": str(seg6[k]) if seg6 else None,
        "bridge": segment_bridge(k), "router_port": segment_router_port(k), "router_link": segment_router_link(k),
        "router_ipv4": str(seg4[k].network_address + ROUTER_HOST),
        "router_ipv6": str(v6_host(seg6[k], ROUTER_HOST)) if seg6 else None,
    } for k in range(count)]
    gw4 = seg4[0].network_address + ROUTER_HOST
    gw6 = v6_host(seg6[0], ROUTER_HOST) if seg6 else None
    for node, (seg, slot) in zip(nodes, placement):
        host = FIRST_NODE_HOST + slot
        net4, net6 = seg4[seg], seg6[seg] if seg6 else None
        topo["nodes"][node] = {
            "netns": node,
            "ipv4": str(net4.network_address + host),
            "ipv6": str(v6_host(net6, host)) if net6 else None,
            "prefix_ipv4": net4.prefixlen,
            "prefix_ipv6": net6.prefixlen if net6 else None,
            "gateway_ipv4": topo["segments"][seg]["router_ipv4"],
            "gateway_ipv6": topo["segments"][seg]["router_ipv6"],
            "switch_port": "p%d" % host if seg == 0 else "s%dp%d" % (seg, host),
            "segment": seg,
            "root": "%s/%s" % (root, node),
        }
    topo["router_info"] = {
        "netns": infra["router"],
        "ipv4": str(gw4),
        "ipv6": str(gw6) if gw6 else None,
        "segments": [{"link": g["router_link"], "ipv4": g["router_ipv4"], "ipv6": g["router_ipv6"]}
                     for g in topo["segments"]],
        "external_ipv4": str(ext.network_address + ROUTER_HOST),
        "external_ipv6": str(v6_host(ext6, ROUTER_HOST)) if ext6 else None,
        "root": "%s/%s" % (root, infra["router"]),
    }
    topo["controller_info"] = {
        "netns": infra["controller"],
        "ipv4": str(seg4[0].network_address + CONTROLLER_HOST),
        "ipv6": str(v6_host(seg6[0], CONTROLLER_HOST)) if seg6 else None,
        "key": "%s/%s/%s" % (root, SSH_DIR, SSH_KEY),
        "run_prefix": "nsenter --net=%s/%s --" % (NETNS_DIR, infra["controller"]),
    } if topo["ssh"] else None
    topo["external_info"] = {
        "netns": infra["external"],
        "ipv4": str(ext.network_address + EXTERNAL_HOST),
        "ipv6": str(v6_host(ext6, EXTERNAL_HOST)) if ext6 else None,
        "root": "%s/%s" % (root, infra["external"]),
    }
    return topo


def _segments(net, count, what, errors):
    """The first ``count`` equal parts of ``net`` (the whole of it for one segment)."""
    if count == 1:
        return [net]
    bits = (count - 1).bit_length()
    limit = 30 if net.version == 4 else 126
    if net.prefixlen + bits > limit:
        errors.append("%s: %s cannot be split into %d segments (2^%d parts of /%d; at most /%d leaves room for the "
                      "router and nodes)" % (what, net, count, bits, net.prefixlen + bits, limit))
        return None
    return list(net.subnets(prefixlen_diff=bits))[:count]


def segment_bridge(k):
    """The switch's bridge of segment ``k`` (segment 0 keeps the single-segment lab's names)."""
    return BRIDGE if k == 0 else "br%d" % k


def segment_router_port(k):
    return ROUTER_PORT if k == 0 else "%s%d" % (ROUTER_PORT, k)


def segment_router_link(k):
    """The router's link on segment ``k``: eth0 for the first (eth1 faces the external host), eth2... after."""
    return "eth0" if k == 0 else "eth%d" % (k + 1)


def desired_state(topo):
    """Namespaces, links, addresses, routes and sysctls the lab must have."""
    sw, rt, ex = topo["switch"], topo["router"], topo["external"]
    r = topo["router_info"]
    e = topo["external_info"]
    segs = topo["segments"]
    p4 = ipaddress.ip_network(segs[0]["subnet"]).prefixlen
    x4 = ipaddress.ip_network(topo["external_cidr"]).prefixlen
    p6 = ipaddress.ip_network(segs[0]["subnet_ipv6"]).prefixlen if topo["subnet_ipv6"] else None
    x6 = ipaddress.ip_network(topo["external_cidr_ipv6"]).prefixlen if topo["external_cidr_ipv6"] else None

    namespaces = [sw, rt, ex] + list(topo["node_names"])
    # (ns, name) -> link spec
    links = {}
    veths = []  # (ns_a, name_a, ns_b, name_b): the pair is created from side a

    def link(ns, name, kind, master=None, alias=None, addrs=()):
        links[(ns, name)] = {"kind": kind, "master": master, "alias": alias, "addrs": list(addrs)}

    for ns in namespaces:
        link(ns, "lo", "loopback")
    for seg in segs:
        link(sw, seg["bridge"], "bridge")
        link(sw, seg["router_port"], "veth", master=seg["bridge"], alias=rt)
        router_addrs = ("%s/%d" % (seg["router_ipv4"], p4), "%s/%d" % (seg["router_ipv6"], p6) if p6 else None)
        link(rt, seg["router_link"], "veth", addrs=[a for a in router_addrs if a])
        veths.append((sw, seg["router_port"], rt, seg["router_link"]))
    link(rt, "eth1", "veth", addrs=[a for a in ("%s/%d" % (r["external_ipv4"], x4),
                                                "%s/%d" % (r["external_ipv6"], x6) if x6 else None) if a])
    link(ex, "eth0", "veth", addrs=[a for a in ("%s/%d" % (e["ipv4"], x4),
                                                "%s/%d" % (e["ipv6"], x6) if x6 else None) if a])
    veths.append((rt, "eth1", ex, "eth0"))
    routes = []  # (ns, family, dst, via)
    for node in topo["node_names"]:
        n = topo["nodes"][node]
        link(sw, n["switch_port"], "veth", master=segs[n["segment"]]["bridge"], alias=node)
        link(node, "eth0", "veth", addrs=[a for a in ("%s/%d" % (n["ipv4"], p4),
                                                      "%s/%d" % (n["ipv6"], p6) if p6 else None) if a])
        veths.append((sw, n["switch_port"], node, "eth0"))
        routes.append((node, 4, "default", n["gateway_ipv4"]))
        if p6 and not topo.get("router_advertisements"):
            # with router advertisements the node's kernel learns it (proto ra) instead
            routes.append((node, 6, "default", n["gateway_ipv6"]))
    if topo["ssh"]:
        c = topo["controller_info"]
        ctl = topo["controller"]
        namespaces.append(ctl)
        link(ctl, "lo", "loopback")
        link(sw, CONTROLLER_PORT, "veth", master=BRIDGE, alias=ctl)
        link(ctl, "eth0", "veth", addrs=[a for a in ("%s/%d" % (c["ipv4"], p4),
                                                     "%s/%d" % (c["ipv6"], p6) if p6 else None) if a])
        veths.append((sw, CONTROLLER_PORT, ctl, "eth0"))
    routes.append((ex, 4, topo["subnet"], r["external_ipv4"]))
    if topo["subnet_ipv6"] and r["external_ipv6"]:
        routes.append((ex, 6, topo["subnet_ipv6"], r["external_ipv6"]))
    sysctls = {rt: dict(ROUTER_SYSCTLS_V4)}
    if topo["subnet_ipv6"]:
        sysctls[rt].update(ROUTER_SYSCTLS_V6)
    return {"namespaces": namespaces, "links": links, "veths": veths, "routes": routes, "sysctls": sysctls,
            "neighbours": switch_neighbours(topo)}


def switch_neighbours(topo):
    """The permanent neighbour entries of the hosts on the lab's switch: {namespace: {address: peer namespace}}.

    Every host on the switch (router, nodes, controller) knows the underlay addresses (IPv4 and IPv6) of every
    other one, as entries of state ``permanent`` on its ``eth0``, pointing at the other's ``eth0`` MAC. Why:
    the kernel keeps one ARP table and one NDP table for all network namespaces of the machine, and caps the
    entries it may garbage-collect at ``net.ipv4.neigh.default.gc_thresh3`` (1024 by default) for all
    namespaces together (``neighbor table overflow`` in the kernel log). Real hosts each have their own table;
    a lab of N nodes on one switch needs N*(N-1) entries at once as soon as every node talks to every other
    one (verify's full matrix): 870 at 30 nodes, the cap with what pods need. Permanent entries are not
    counted against the cap, so the lab's underlay never competes with the pods' own (dynamic) entries.
    Empty when ``topo["static_neighbours"]`` is false.
    """
    if not topo.get("static_neighbours", True):
        return {}
    # (namespace, addresses, segment): with the routed layout (segments) a host knows the hosts of its own
    # segment only; the router's entries (on its eth0) are those of segment 0
    hosts = [(topo["router"], [topo["router_info"]["ipv4"], topo["router_info"]["ipv6"]], 0)]
    for node in topo["node_names"]:
        n = topo["nodes"][node]
        hosts.append((node, [n["ipv4"], n["ipv6"]], n.get("segment", 0)))
    if topo.get("ssh") and topo.get("controller_info"):
        c = topo["controller_info"]
        hosts.append((topo["controller"], [c["ipv4"], c["ipv6"]], 0))
    out = {}
    for ns, _mine, seg in hosts:
        out[ns] = {addr: peer for peer, addrs, other in hosts if peer != ns and other == seg for addr in addrs if addr}
    return out


def host_files(topo, hide_services):
    """Files and opaque directories written into the upper ``etc`` layer of each emulated host."""
    hosts = {}
    entries = [(n, topo["nodes"][n]["root"], topo["nodes"][n]["ipv4"], topo["nodes"][n]["ipv6"])
               for n in topo["node_names"]]
    r, e = topo["router_info"], topo["external_info"]
    entries.append((topo["router"], r["root"], r["ipv4"], r["ipv6"]))
    entries.append((topo["external"], e["root"], e["ipv4"], e["ipv6"]))
    for host, root, ipv4, ipv6 in entries:
        lines = [HOSTS_HEADER, "127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n",
                 "%s\t%s\n" % (ipv4, host)]
        if ipv6:
            lines.append("%s\t%s\n" % (ipv6, host))
        hosts[host] = {
            "root": root,
            "files": {
                "etc/hostname": "%s\n" % host,
                "etc/hosts": "".join(lines),
                "etc/resolv.conf": "",
            },
            "opaque": ["etc/init.d", "etc/systemd"] if hide_services else [],
        }
    return hosts


def build_inventory(topo, inventory_vars):
    """The lab's YAML inventory as data (see RETURN)."""
    def host_vars(netns, root, node=None):
        hv = {"podnet_netns": netns, "podnet_netns_root": root}
        if node is not None and topo.get("node_ip", True):
            # address/prefix: the plan then knows the node network too (never masqueraded).
            ipv4 = "%s/%d" % (node["ipv4"], node["prefix_ipv4"])
            hv["podnet_node_ip"] = ipv4 if not node["ipv6"] else [ipv4, "%s/%d" % (node["ipv6"], node["prefix_ipv6"])]
        if node is not None and topo.get("ssh"):
            # Real SSH to the node's sshd, from the controller namespace (see docs/lab.md).
            hv.update(ssh_host_vars(topo, node))
        return hv

    node_vars = {"podnet_verify_external": topo["external_info"]["ipv4"],
                 "podnet_verify_external_host": topo["external"]}
    if topo["external_info"]["ipv6"]:
        node_vars["podnet_verify_external_ipv6"] = topo["external_info"]["ipv6"]
    node_vars.update(inventory_vars or {})
    r, e = topo["router_info"], topo["external_info"]
    inventory = {
        "all": {
            "children": {
                "podnet_lab": {
                    "vars": {
                        "ansible_connection": "podnet.lab.netns",
                        "ansible_python_interpreter": "/usr/bin/python3",
                        "ansible_become": False,
                        # the nodes' Python keeps what it compiles from module zips here (the connection's
                        # podnet_netns_code_cache): <root>/code-cache, which goes with the lab, or code_cache
                        "podnet_netns_code_cache": topo["code_cache"],
                    },
                    "children": {
                        "podnet_nodes": {
                            "hosts": {n: host_vars(n, topo["nodes"][n]["root"], topo["nodes"][n])
                                      for n in topo["node_names"]},
                            "vars": node_vars,
                        },
                        "podnet_lab_router": {"hosts": {topo["router"]: host_vars(topo["router"], r["root"])}},
                        "podnet_lab_external": {"hosts": {topo["external"]: host_vars(topo["external"], e["root"])}},
                    },
                }
            }
        }
    }
    if (inventory_vars or {}).get("podnet_fabric") == "router":
        # the lab router is the fabric: it routes every node's pod subnets
        inventory["all"]["children"]["podnet_lab"]["children"]["podnet_routers"] = {"hosts": {topo["router"]: {}}}
    return inventory
