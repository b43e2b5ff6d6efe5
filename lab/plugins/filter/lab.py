# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Filters of the lab role (controller side, netaddr). Documentation: lab_input_errors.yml."""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Mapping, Optional

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import (
    EXTERNAL_HOST,
    FIRST_NODE_HOST,
    MACHINE_DIRS,
    NAME_RE,
    code_cache_error,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils import plan

# Directories every node overlays, or that are not real directories.
# Tools the lab module (ip, sysctl) and the netns connection (nsenter, unshare, mount) run.
TOOLS = {"ip": "iproute2", "sysctl": "procps", "nsenter": "util-linux", "unshare": "util-linux", "mount": "mount"}
# More tools with podnet_lab_ssh (an sshd per node, keys; the controller runs ssh).
SSH_TOOLS = {"sshd": "openssh-server", "ssh-keygen": "openssh-client", "ssh": "openssh-client"}
TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def _net(value: Any, var: str, version: int, errors: List[str], required: bool) -> Optional[Any]:
    if value in (None, ""):
        if required:
            errors.append("%s: an IPv%d network is required" % (var, version))
        return None
    net = plan.parse_network(value, var, errors)
    if net is not None and net.version != version:
        errors.append("%s: %s is an IPv%d network; IPv%d is expected here" % (var, value, net.version, version))
        return None
    return net


def lab_input_errors(inputs: Mapping[str, Any]) -> List[str]:
    """Every problem of the lab role's inputs, one line each; [] when they are usable.

    ``inputs`` keys: state, name, nodes, subnet, subnet_ipv6, external_cidr,
    external_cidr_ipv6, root, code_cache, inventory_dir, inventory_vars, ssh, router_advertisements, ra_interval,
    ra_lifetime, node_ip, segments (the podnet_lab_*
    variables without their prefix); with ``check_tools`` (default true) the
    commands the lab runs are looked up on this machine, the controller, which
    is where the lab play (hosts: localhost, connection: local) builds the lab.
    """
    if not isinstance(inputs, Mapping):
        raise AnsibleFilterError("lab_input_errors expects a dict, got %s" % type(inputs).__name__)
    plan.require_netaddr()
    errors: List[str] = []
    state = inputs.get("state", "present")
    if state not in ("present", "absent"):
        errors.append("podnet_lab_state: %r is neither 'present' nor 'absent'" % (state,))
    name = inputs.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 40:
        errors.append("podnet_lab_name: %r must start with a letter or digit, hold only letters, digits, '.' "
                      "and '-', and have at most 40 characters (it prefixes namespace and host names)" % (name,))
    raw_count = inputs.get("nodes")
    count = None
    if isinstance(raw_count, (list, tuple)):
        # Explicit node names (the namespace and inventory names).
        names = [str(n) for n in raw_count]
        for n in names:
            if not NAME_RE.match(n) or len(n) > 40:
                errors.append("podnet_lab_nodes: node name %r must start with a letter or digit, hold only letters, "
                              "digits, '.' and '-', and have at most 40 characters" % (n,))
        if len(set(names)) != len(names):
            errors.append("podnet_lab_nodes: a node name is listed twice: %s" % ", ".join(names))
        infra = ({"%s-%s" % (name, suffix) for suffix in ("sw", "router", "ext", "ctl")}
                 if isinstance(name, str) else set())
        for n in sorted(infra & set(names)):
            errors.append("podnet_lab_nodes: node name %s is taken by the lab's own switch, router, external "
                          "host or controller namespace" % n)
        count = len(names)
    elif isinstance(raw_count, bool):
        errors.append("podnet_lab_nodes: %r is not a number of nodes" % (raw_count,))
    else:
        try:
            count = int(str(raw_count))
        except (TypeError, ValueError):
            errors.append("podnet_lab_nodes: %r is not a number of nodes" % (raw_count,))
    if count is not None and count < 1 and state == "present":
        errors.append("podnet_lab_nodes: %d; a lab needs at least one node" % count)

    subnet = _net(inputs.get("subnet"), "podnet_lab_subnet", 4, errors, True)
    subnet6 = _net(inputs.get("subnet_ipv6"), "podnet_lab_subnet_ipv6", 6, errors, False)
    ext = _net(inputs.get("external_cidr"), "podnet_lab_external_cidr", 4, errors, True)
    ext6 = _net(inputs.get("external_cidr_ipv6"), "podnet_lab_external_cidr_ipv6", 6, errors, False)
    if inputs.get("external_cidr_ipv6") and not inputs.get("subnet_ipv6"):
        errors.append("podnet_lab_external_cidr_ipv6: set without podnet_lab_subnet_ipv6; the external host "
                      "would have no IPv6 node network to route to")
    segments = inputs.get("segments", 1)
    try:
        segments = int(str(segments)) if not isinstance(segments, bool) else 0
    except (TypeError, ValueError):
        segments = 0
    if segments < 1:
        errors.append("podnet_lab_segments: %r is not a number of segments (1 or more)" % (inputs.get("segments"),))
        segments = 1
    bits = (segments - 1).bit_length()
    for net, var, limit in ((subnet, "podnet_lab_subnet", 30), (subnet6, "podnet_lab_subnet_ipv6", 126)):
        if net is not None and segments > 1 and net.prefixlen + bits > limit:
            errors.append("%s: %s cannot be split into %d segments (2^%d parts of /%d; at most /%d leaves room for "
                          "the router and nodes)" % (var, net, segments, bits, net.prefixlen + bits, limit))
    per_segment = -(-count // segments) if count else count
    if subnet is not None and per_segment:
        size = subnet.size >> bits
        last = FIRST_NODE_HOST + per_segment - 1
        if last > size - 2:
            errors.append("podnet_lab_subnet: %s%s has hosts .1 to .%d; %d node(s) from .%d need up to .%d"
                          % (subnet, " split into %d segments" % segments if segments > 1 else "", size - 2,
                             per_segment, FIRST_NODE_HOST, last))
    if subnet6 is not None and per_segment and int(str(FIRST_NODE_HOST + per_segment - 1), 16) > (subnet6.size >> bits) - 1:
        errors.append("podnet_lab_subnet_ipv6: %s is too small for %d node(s) per segment" % (subnet6, per_segment))
    for net, var in ((ext, "podnet_lab_external_cidr"), (ext6, "podnet_lab_external_cidr_ipv6")):
        if net is not None and net.size - 2 < EXTERNAL_HOST:
            errors.append("%s: %s is too small for the router (host 1) and the external host (host 10); "
                          "use /28 or shorter" % (var, net))
    for a, b, va, vb in ((subnet, ext, "podnet_lab_subnet", "podnet_lab_external_cidr"),
                         (subnet6, ext6, "podnet_lab_subnet_ipv6", "podnet_lab_external_cidr_ipv6")):
        if a is not None and b is not None and a.first <= b.last and b.first <= a.last:
            errors.append("%s %s overlaps %s %s" % (va, a, vb, b))

    root = inputs.get("root")
    if not isinstance(root, str) or not root.startswith("/"):
        errors.append("podnet_lab_root: %r is not an absolute path" % (root,))
    else:
        clean = "/" + root.strip("/")
        if clean == "/":
            errors.append("podnet_lab_root: '/' cannot be the lab directory")
        elif any(c in clean for c in (",", ":", "\\", "\n", " ")):
            errors.append("podnet_lab_root: %s contains a character an overlay mount option cannot carry "
                          "(',', ':', '\\', blank)" % clean)
        for machine_dir in MACHINE_DIRS:
            if clean == machine_dir or clean.startswith(machine_dir + "/"):
                errors.append("podnet_lab_root: %s is inside %s, which every node overlays or which is not a "
                              "real directory; use one elsewhere, e.g. under /var/tmp" % (clean, machine_dir))
    cache_error = code_cache_error(inputs.get("code_cache"), "podnet_lab_code_cache")
    if cache_error:
        errors.append(cache_error)
    inventory_dir = inputs.get("inventory_dir")
    if not isinstance(inventory_dir, str) or not inventory_dir.strip():
        errors.append("podnet_lab_inventory_dir: %r is not a directory path" % (inventory_dir,))
    inventory_vars = inputs.get("inventory_vars") or {}  # None: the lab keeps what it recorded
    if not isinstance(inventory_vars, Mapping):
        errors.append("podnet_lab_inventory_vars: must be a dict, not %s" % type(inventory_vars).__name__)
    try:
        ssh = boolean(inputs.get("ssh", False), strict=True)
    except TypeError:
        errors.append("podnet_lab_ssh: %r is not a boolean" % (inputs.get("ssh"),))
        ssh = False
    try:
        advertise = boolean(inputs.get("router_advertisements", False), strict=True)
    except TypeError:
        errors.append("podnet_lab_router_advertisements: %r is not a boolean" % (inputs.get("router_advertisements"),))
        advertise = False
    if advertise and not inputs.get("subnet_ipv6"):
        errors.append("podnet_lab_router_advertisements: the router advertises an IPv6 default route, but "
                      "podnet_lab_subnet_ipv6 is empty (no IPv6 underlay)")
    for var, low, high, what in (("ra_interval", 1, 1800, "seconds between advertisements"),
                                 ("ra_lifetime", 0, 9000, "router lifetime in seconds (RFC 4861)")):
        value = inputs.get(var, low)
        try:
            number = int(str(value))
        except (TypeError, ValueError):
            number = None
        if isinstance(value, bool) or number is None or not low <= number <= high:
            errors.append("podnet_lab_%s: %r is not a %s from %d to %d" % (var, value, what, low, high))
    try:
        boolean(inputs.get("node_ip", True), strict=True)
    except TypeError:
        errors.append("podnet_lab_node_ip: %r is not a boolean" % (inputs.get("node_ip"),))
    if inputs.get("check_tools", True):
        tools = dict(TOOLS)
        if ssh is True and state == "present":
            tools.update(SSH_TOOLS)
        missing = sorted(tool for tool in tools if shutil.which(tool, path=TOOL_PATH) is None)
        if missing:
            errors.append("missing on this machine: %s; install the Debian package(s) %s"
                          % (", ".join(missing), ", ".join(sorted({tools[t] for t in missing}))))
    return errors


class FilterModule:
    """The filters of podnet.lab."""

    def filters(self) -> Dict[str, Any]:
        return {"lab_input_errors": lab_input_errors}
