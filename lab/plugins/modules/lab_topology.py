#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Build or remove the podnet lab: network namespaces that emulate hosts."""

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_topology
short_description: Build or remove the podnet lab, a set of network namespaces that emulate hosts
version_added: 0.1.0
author: podnet.cluster maintainers (!UNKNOWN)
description:
  - Builds, in one idempotent call, a lab of Linux network namespaces on the machine
    the module runs on (normally the Ansible controller, C(connection=local)) -
    an L2 switch, one namespace per node, a router and an external host.
    See docs/lab.md of the collection for the picture.
  - "Switch C(<name>-sw): bridge C(br0), no address, one veth port per node
    (C(p<N>), N the last octet of the node's address, alias the node name) and
    one for the router (C(rtr))."
  - "Node namespaces (named exactly as the nodes): C(lo) up, C(eth0) on the switch with
    the node's underlay address(es) and a default route via the router."
  - "Router C(<name>-router): C(eth0) on the switch, C(eth1) towards the external host,
    forwarding enabled in its namespace only, B(no NAT) and no route to pod networks."
  - "External host C(<name>-ext): C(eth0) with the external address and routes B(only)
    to the node subnet(s) via the router: traffic from a pod reaches it only if the
    node masquerades it."
  - "Per emulated host (nodes, router, external host) it prepares
    C(<root>/<host>/upper/{etc,var-lib,run}) and C(<root>/<host>/work/{etc,var-lib,run}),
    the layers used by the C(podnet.lab.netns) connection, and writes the host's
    own C(/etc/hostname), C(/etc/hosts) and an empty C(/etc/resolv.conf) into its upper
    C(etc). With O(hide_services), C(/etc/init.d) and C(/etc/systemd) of the hosts are
    opaque (empty) directories, so a node does not show the machine's own services."
  - Nothing is changed in the machine's own network namespace; veths are created
    directly inside the lab namespaces, sysctls are written only inside the router's
    namespace, and no lab route leads out of the lab.
  - The module owns the lab's namespaces, the links it creates and their addresses;
    on the switch and the external host it also removes links and routes it did not
    make. Other links, addresses and routes of nodes and router are left alone
    (the podnet roles add bridges and pod routes there).
  - O(state=absent) kills the processes that belong to the lab (their network
    namespace is one of the lab's, or their mount table holds an overlay whose upper
    layer is in O(root), that is they were started through the connection plugin),
    deletes every namespace of the lab by name and removes O(root). Partial leftovers
    of an earlier, interrupted run are tolerated by both states.
  - The lab's node list is recorded in C(<root>/lab.json); nodes that disappear from
    O(nodes) are removed on the next O(state=present) run.
  - "With O(ssh), the lab also serves its nodes over real SSH: an C(sshd) runs inside each
    node's own view (its namespace and its C(/etc), C(/var/lib), C(/run) overlays, as the
    C(podnet.lab.netns) connection sets them up), listening on the node's underlay
    address(es) only, with its configuration, host key, pid file and log in
    C(<root>/<node>/sshd/), root's home directory in its sessions the node's own
    C(<root>/<node>/sshd/home) (the login shell runs none of the machine's start-up files),
    and one client key pair in C(<root>/ssh/); and a controller
    namespace C(<name>-ctl) is attached to the switch with the underlay's second address
    (C(.2), C(::2)), no default route. The nodes of the returned RV(inventory) use
    C(ansible_connection=ssh) with a C(ProxyCommand) relay (C(<root>/ssh/proxy.py)) entered with
    C(nsenter --net=/run/netns/<name>-ctl), so the TCP connection is made in the controller
    namespace whether Ansible runs inside it (C(nsenter --net=/run/netns/<name>-ctl ansible-playbook ...))
    or in the machine's namespace. The machine's own namespace is not touched."
  - A node's C(eth0) that is a port of a bridge (its uplink moved by
    M(podnet.cluster.uplink_bridge)) counts the bridge's addresses as its own, so a repair run
    does not put the node address back on C(eth0).
extends_documentation_fragment:
  - podnet.cluster.attributes
options:
  name:
    description:
      - Lab name, the prefix of the switch, router and external namespaces and of the
        generated node names (O(node_count)).
      - Letters, digits, C(.) and C(-); at most 40 characters.
    type: str
    default: podnet
  nodes:
    description:
      - Node names, which are also their namespace names and inventory host names.
        Addresses are given in list order.
      - Mutually exclusive with O(node_count).
    type: list
    elements: str
  node_count:
    description:
      - Number of nodes, named C(<name>-node1) to C(<name>-node<N>).
      - Mutually exclusive with O(nodes). One of them is required with O(state=present).
    type: int
  subnet:
    description:
      - Underlay IPv4 network of the nodes. The router takes the first address (C(.1)),
        the nodes the 11th address onward, in list order.
    type: str
    default: 172.31.250.0/24
  subnet_ipv6:
    description:
      - Optional underlay IPv6 network (dual stack). The router takes C(::1), node N
        the address whose last group reads like the node's IPv4 host number
        (C(.11) -> C(::11)). Addresses are added with C(nodad).
    type: str
  segments:
    description:
      - Number of L2 segments behind the router (the routed layout when 2 or more). O(subnet) (and
        O(subnet_ipv6)) are split into 2^ceil(log2 N) equal parts and the first N are the segments; segment K is the
        switch's bridge C(br0) (K=0) or C(brK), the router's link C(eth0) (K=0) or C(eth<K+1>) with the
        segment's first address; node I sits on segment I mod N, its address the segment's 11th onward, its
        default route via the router's address there, its switch port C(p<host>) (K=0) or C(s<K>p<host>).
      - The router forwards between the segments and holds no pod route, so pods reach pods on another segment
        only over an overlay (fabric C(vxlan)). The controller namespace (O(ssh)) sits on segment 0.
    type: int
    default: 1
    version_added: 0.2.0
  external_cidr:
    description:
      - IPv4 network between the router (C(.1)) and the external host (C(.10)).
    type: str
    default: 203.0.113.0/24
  external_cidr_ipv6:
    description:
      - Optional IPv6 network between the router (C(::1)) and the external host (C(::10)).
        Needs O(subnet_ipv6).
    type: str
  root:
    description:
      - Lab directory holding the per-host layers and C(lab.json).
      - Must be absolute, outside C(/etc), C(/var/lib) and C(/run), without C(,) or C(:).
        An existing non-empty directory is used only if it holds the C(lab.json) of this lab.
      - Defaults to C(/var/tmp/podnet-lab/<name>).
    type: path
  hide_services:
    description:
      - Make C(/etc/init.d) and C(/etc/systemd) empty on every emulated host (overlay
        opaque directories), so that service managers in a node do not see the
        machine's services.
    type: bool
    default: true
  inventory_vars:
    description:
      - Variables merged into the C(podnet_nodes) group of the returned RV(inventory).
      - Recorded in C(lab.json). Unset, a lab that exists keeps the variables it was last given (a re-run that adds
        a node keeps the fabric, the prefixes, the routers); a new lab gets none. Give C({}) to drop them.
    type: dict
  ssh:
    version_added: 0.2.0
    description:
      - Serve the nodes over SSH and add the controller namespace (see the description).
        Switching it off stops the sshds (by pid) and removes their files and the controller namespace.
      - Needs C(sshd) and C(ssh-keygen) (Debian C(openssh-server), C(openssh-client)).
    type: bool
    default: false
  static_neighbours:
    version_added: 0.2.0
    description:
      - Give every host on the switch (router, nodes, controller) permanent neighbour entries (ARP and NDP)
        for the underlay addresses of every other one, pointing at their C(eth0) MACs.
      - The kernel keeps one neighbour table per family for all network namespaces of the machine and
        refuses new dynamic entries beyond C(net.ipv4.neigh.default.gc_thresh3) (1024 by default) for all of
        them together, while real hosts each have their own table. Without these entries a lab of about 30
        nodes whose nodes all talk to each other at once (the full verify matrix) overflows it, and
        connections time out (C(neighbor table overflow) in the kernel log). Permanent entries do not count
        against that limit. Switch it off to test ARP/NDP on the underlay itself.
    type: bool
    default: true
  router_advertisements:
    version_added: 0.2.0
    description:
      - The router sends real router advertisements on its link to the nodes (ICMPv6 type 134 from its link-local
        address once that is no longer tentative, hop limit 255, to C(ff02::1), a source link-layer address option,
        no prefix option); three at one-second spacing, then one every O(ra_interval) seconds and one for each
        router solicitation. The nodes get no static IPv6 default route; their kernels learn it (C(proto ra)).
        The module waits up to 20 s until every node holds it.
      - "The sender is a Python program run with C(nsenter --net) in the router's namespace; its program, settings
        (C(ra.json): C(interval), C(lifetime)), pid file and log are in C(<root>/<name>-router/ra/). SIGHUP makes it
        re-read the settings and advertise at once. It is tracked by its pid file and stopped by that pid when
        the lab is removed or the option is off."
      - Needs O(subnet_ipv6).
    type: bool
    default: false
  ra_interval:
    version_added: 0.2.0
    description: Seconds between periodic router advertisements (1 to 1800).
    type: int
    default: 10
  ra_lifetime:
    version_added: 0.2.0
    description: Router lifetime of the advertisements, in seconds (0 to 9000); 0 withdraws the default route.
    type: int
    default: 1800
  node_ip:
    version_added: 0.2.0
    description:
      - Give each node C(podnet_node_ip) (its underlay address/prefix of each family) in the returned
        RV(inventory). V(false) leaves it out, so that the plan finds node IPs from the nodes' facts.
    type: bool
    default: true
  state:
    description:
      - C(present) builds or repairs the lab, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Needs root, C(ip) from iproute2, C(sysctl) and C(nsenter)/C(unshare)
    (util-linux) on the target; standard library Python only.
seealso:
  - plugin: podnet.lab.netns
    plugin_type: connection
"""

EXAMPLES = r"""
- name: Build a dual-stack lab of three nodes
  podnet.lab.lab_topology:
    name: lab
    node_count: 3
    subnet: 172.30.9.0/24
    subnet_ipv6: fd00:30:9::/64
    external_cidr_ipv6: fd00:203::/64
  register: lab

- name: Show node1's underlay address
  ansible.builtin.debug:
    msg: "{{ lab.nodes['lab-node1'].ipv4 }}"

- name: Write an inventory for the lab (no Jinja logic needed)
  ansible.builtin.copy:
    content: "{{ lab.inventory | to_nice_yaml(indent=2) }}"
    dest: inventories/lab/hosts.yml
    mode: "0644"

- name: Nodes with explicit names
  podnet.lab.lab_topology:
    name: mini
    nodes: [alpha, beta]

- name: Remove the lab, its namespaces, processes and directory
  podnet.lab.lab_topology:
    name: lab
    state: absent
"""

RETURN = r"""
commands:
  description: Commands run (or, in check mode, that would run) and other changes made.
  returned: always
  type: list
  elements: str
  sample: ["ip netns add lab-sw", "ip -n lab-sw link add br0 type bridge"]
namespaces:
  description: Every namespace of the lab (switch, router, external host, nodes).
  returned: always
  type: list
  elements: str
  sample: [lab-sw, lab-router, lab-ext, lab-node1]
root:
  description: The lab directory.
  returned: always
  type: str
  sample: /var/tmp/podnet-lab/lab
nodes:
  description: Per node, its underlay addresses, namespace and root directory.
  returned: state=present
  type: dict
  sample:
    lab-node1: {ipv4: 172.30.9.11, ipv6: "fd00:30:9::11", prefix_ipv4: 24, prefix_ipv6: 64,
                gateway_ipv4: 172.30.9.1, gateway_ipv6: "fd00:30:9::1", netns: lab-node1,
                root: /var/tmp/podnet-lab/lab/lab-node1, switch_port: p11}
router:
  description: The router's namespace and addresses (C(ipv4)/C(ipv6) towards the nodes,
    C(external_ipv4)/C(external_ipv6) towards the external host).
  returned: state=present
  type: dict
  sample: {netns: lab-router, ipv4: 172.30.9.1, ipv6: "fd00:30:9::1", external_ipv4: 203.0.113.1,
           external_ipv6: null, root: /var/tmp/podnet-lab/lab/lab-router}
external:
  description: The external host's namespace and addresses.
  returned: state=present
  type: dict
  sample: {netns: lab-ext, ipv4: 203.0.113.10, ipv6: null, root: /var/tmp/podnet-lab/lab/lab-ext}
switch:
  description: The switch namespace, its first bridge and every segment's bridge.
  returned: state=present
  type: dict
  sample: {netns: lab-sw, bridge: br0, bridges: [br0]}
segments:
  description: Per segment its networks, bridge, the router's port, link and addresses on it.
  returned: state=present
  type: list
  elements: dict
  sample: [{subnet: 172.30.9.0/25, subnet_ipv6: "fd00:30:9::/65", bridge: br0, router_port: rtr, router_link: eth0,
            router_ipv4: 172.30.9.1, router_ipv6: "fd00:30:9::1"}]
inventory:
  description:
    - An Ansible YAML inventory of the lab (group C(podnet_lab) with children C(podnet_nodes),
      C(podnet_lab_router) and C(podnet_lab_external)); every host uses the
      C(podnet.lab.netns) connection with its own C(podnet_netns_root).
    - C(podnet_nodes) vars hold C(podnet_verify_external), C(podnet_verify_external_host) (and C(podnet_verify_external_ipv6))
      plus O(inventory_vars).
  returned: state=present
  type: dict
inventory_vars:
  description: The variables merged into C(podnet_nodes) - O(inventory_vars), or when unset those the lab recorded.
  returned: state=present
  type: dict
  sample: {podnet_fabric: router, podnet_node_prefix_ipv4: 26}
controller:
  description:
    - With O(ssh), the controller namespace, its addresses, the client key and the command prefix
      that runs a program (ansible-playbook) inside it.
  returned: state=present and ssh
  type: dict
  sample: {netns: lab-ctl, ipv4: 172.30.9.2, ipv6: null, key: /var/tmp/podnet-lab/lab/ssh/id_ed25519,
           run_prefix: "nsenter --net=/run/netns/lab-ctl --"}
killed:
  description: Processes killed (or, in check mode, that would be killed) because they belong to the lab.
  returned: always
  type: list
  elements: dict
  sample: [{pid: 4242, comm: sleep, netns: lab-node1, reason: netns}]
"""

import ipaddress
import json
import os
import pwd
import shlex
import shutil
import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import (
    BRIDGE,
    NETNS_DIR,
    OVERLAY_LAYERS,
    SSH_DIR,
    SSH_KEY,
    SSH_PROXY,
    PROXY_SCRIPT,
    RA_SCRIPT,
    SSHD,
    SSHD_DIR,
    STATE_FILE,
    STATE_VERSION,
    LabError,
    build_inventory,
    build_topology,
    desired_state,
    host_files,
    ra_files,
    sshd_files,
)
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write
from ansible_collections.podnet.lab.plugins.module_utils.netns import build_argv, join


class Lab:
    """Reads and changes the lab through ``ip``; every change goes through :meth:`run_change`."""

    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.commands = []
        self.ip = module.get_bin_path("ip", required=True)
        self._nsfs_dev = os.stat("/proc/self/ns/net").st_dev

    # -- low level ---------------------------------------------------------

    def run(self, argv, data=None):
        rc, out, err = self.module.run_command(argv, data=data, binary_data=data is not None)
        return rc, out, err

    def must(self, argv):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise LabError("%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()))
        return out

    def run_change(self, argv, text=None):
        """Record a change; run it unless in check mode."""
        if text is None:
            text = " ".join(["ip"] + list(argv[1:]) if argv[0] == self.ip else argv)
        self.commands.append(text)
        if not self.check:
            self.must(argv)

    def note(self, text):
        self.commands.append(text)

    def delete_link(self, ns, name):
        """Delete a link. One gone by then is no error: the peer of a veth whose namespace was just deleted goes
        when the kernel has torn that namespace down, which it does asynchronously (a shrinking lab read the
        switch port as there, then failed to delete it: 'Cannot find device')."""
        argv = [self.ip, "-n", ns, "link", "delete", name]
        self.commands.append(" ".join(["ip"] + argv[1:]))
        if self.check:
            return
        rc, out, err = self.run(argv)
        if rc != 0 and self.link_exists(ns, name):
            raise LabError("%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()))

    # -- namespaces ----------------------------------------------------------

    def netns_state(self, ns):
        """'ok', 'missing' or 'stale' (a file in /run/netns that is not a mounted namespace)."""
        path = os.path.join(NETNS_DIR, ns)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return "missing"
        return "ok" if st.st_dev == self._nsfs_dev else "stale"

    def netns_id(self, ns):
        try:
            st = os.stat(os.path.join(NETNS_DIR, ns))
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if st.st_dev == self._nsfs_dev else None

    def ip_json(self, ns, *args):
        out = self.must([self.ip, "-n", ns, "-j"] + list(args))
        out = out.strip()
        return json.loads(out) if out else []

    def read_ns(self, ns, families):
        """links (with addresses) and main-table routes of one existing namespace."""
        links = {}
        for entry in self.ip_json(ns, "-d", "addr", "show"):
            kind = (entry.get("linkinfo") or {}).get("info_kind")
            if entry.get("link_type") == "loopback":
                kind = "loopback"
            addrs = sorted(
                "%s/%s" % (a["local"], a["prefixlen"])
                for a in entry.get("addr_info", [])
                if a.get("scope") == "global" and a.get("family") in ("inet", "inet6")
            )
            links[entry["ifname"]] = {
                "ifindex": entry.get("ifindex"),
                "link_index": entry.get("link_index"),
                "peer_elsewhere": "link_netnsid" in entry,
                "kind": kind,
                "master": entry.get("master"),
                "alias": entry.get("ifalias"),
                "up": "UP" in entry.get("flags", []),
                "addrs": addrs,
            }
        routes = []
        for family in families:
            for rt in self.ip_json(ns, "-%d" % family, "route", "show"):
                routes.append({
                    "family": family,
                    "dst": rt.get("dst"),
                    "via": rt.get("gateway"),
                    "dev": rt.get("dev"),
                    "protocol": rt.get("protocol", "boot"),
                    "type": rt.get("type", "unicast"),
                })
        return {"links": links, "routes": routes}

    def link_exists(self, ns, name):
        rc, _out, _err = self.run([self.ip, "-n", ns, "link", "show", "dev", name])
        return rc == 0

    def read_sysctls(self, ns, keys):
        if not keys:
            return {}
        paths = ["/proc/sys/" + k.replace(".", "/") for k in keys]
        rc, out, _err = self.run([self.ip, "netns", "exec", ns, "cat"] + paths)
        values = out.split("\n") if rc == 0 else []
        return {k: (values[i].strip() if i < len(values) else None) for i, k in enumerate(keys)}

    # -- processes -----------------------------------------------------------

    def lab_processes(self, namespaces, roots):
        """Processes whose net namespace is one of ``namespaces``, or whose mounts use an upper layer in ``roots``."""
        ids = {}
        for ns in namespaces:
            nid = self.netns_id(ns)
            if nid is not None:
                ids[nid] = ns
        markers = [("upperdir=%s/" % root).encode() for root in roots or ()]
        mount_cache = {}
        me = os.getpid()
        ancestors = set()
        pid = me
        while pid > 1:
            ancestors.add(pid)
            try:
                with open("/proc/%d/stat" % pid) as fh:
                    pid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid in ancestors or pid == 1:
                continue
            reason = netns = None
            try:
                st = os.stat("/proc/%d/ns/net" % pid)
                if (st.st_dev, st.st_ino) in ids:
                    reason, netns = "netns", ids[(st.st_dev, st.st_ino)]
                elif markers:
                    mst = os.stat("/proc/%d/ns/mnt" % pid)
                    key = (mst.st_dev, mst.st_ino)
                    if key not in mount_cache:
                        with open("/proc/%d/mountinfo" % pid, "rb") as fh:
                            table = fh.read()
                        mount_cache[key] = any(m in table for m in markers)
                    if mount_cache[key]:
                        reason = "mount"
                if reason is None:
                    continue
                with open("/proc/%d/comm" % pid) as fh:
                    comm = fh.read().strip()
            except OSError:
                continue  # gone, or a kernel thread without namespaces
            found.append({"pid": pid, "comm": comm, "netns": netns, "reason": reason})
        return found

    def kill(self, procs):
        if self.check or not procs:
            return
        for p in procs:
            try:
                os.kill(p["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        alive = _still_running(procs, 3)
        for p in alive:
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        _still_running(alive, 2)


def _running(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _still_running(procs, seconds):
    """Those of ``procs`` still running after waiting up to ``seconds`` for them to end (polled every 50 ms)."""
    deadline = time.monotonic() + seconds
    alive = [p for p in procs if _running(p["pid"])]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p["pid"])]
    return alive


# --------------------------------------------------------------------------
# reconcile


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
                _write(path, content)
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
# SSH (option ssh)


def _listening(pid, port=22):
    """True when the network namespace of ``pid`` has a TCP socket listening on ``port``."""
    suffix = ":%04X" % port
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as fh:
                for line in list(fh)[1:]:
                    fields = line.split()
                    if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == "0A":
                        return True
        except OSError:
            continue
    return False


def _pid_from_file(pid_file, marker, nsid=None):
    """PID of a running process from its pid file, checked against /proc: ``marker`` in its command line and,
    given ``nsid`` (device, inode), its network namespace. ``None`` when any of that does not hold."""
    try:
        with open(pid_file) as fh:
            pid = int(fh.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            cmdline = fh.read()
        st = os.stat("/proc/%d/ns/net" % pid)
    except (OSError, ValueError):
        return None
    if marker.encode() not in cmdline or not _running(pid):
        return None
    if nsid is not None and (st.st_dev, st.st_ino) != nsid:
        return None
    return pid


def sshd_pid(spec, nsid=None):
    """PID of a node's running sshd (its config file in the command line)."""
    return _pid_from_file(spec["pid_file"], spec["config_path"], nsid)


def _keygen(lab, keygen, path, comment):
    for old in (path, path + ".pub"):
        if os.path.lexists(old):
            lab.note("remove %s" % old)
            if not lab.check:
                os.unlink(old)
    lab.run_change([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])


def _ensure_dir(lab, path, mode):
    if not os.path.isdir(path):
        lab.note("mkdir %s" % path)
        if not lab.check:
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chmod(path, mode)


def _write_if_changed(lab, path, content, mode, before):
    try:
        with open(path) as fh:
            if fh.read() == content:
                before.add("file %s" % path)
                return False
    except OSError:
        pass
    lab.note("write %s" % path)
    if not lab.check:
        _write(path, content)
        os.chmod(path, mode)
    return True


def start_sshd(lab, topo, node, spec):
    """Start the node's sshd inside the node's view (the netns connection's wrapper); wait until it listens."""
    # The sessions' home directory is the node's own, as on a host of its own: over the machine's /root,
    # root's login shell (bash, started by sshd) would run the machine's ~/.bashrc before every command
    # (a pyenv there rehashes into /root/.pyenv, and waits 60 s on a stale lock of that). The bind mount
    # lives in the wrapper's private mount namespace: only this sshd and its sessions see it.
    command = "mount --bind %s %s && exec %s -f %s -E %s" % (
        shlex.quote(spec["home"]), shlex.quote(pwd.getpwuid(0).pw_dir), SSHD, shlex.quote(spec["config_path"]),
        shlex.quote(spec["log"]))
    argv = build_argv(node, command, root=topo["nodes"][node]["root"], hostname=node)
    lab.run_change(argv, text="start sshd of %s in its view (listening on %s): %s"
                   % (node, ", ".join(spec["listen"]), join(argv)))
    if lab.check:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = sshd_pid(spec)
        if pid is not None and _listening(pid):
            return
        time.sleep(0.05)
    try:
        with open(spec["log"]) as fh:
            log = fh.read()[-2000:]
    except OSError:
        log = "(no log)"
    raise LabError("the sshd of %s does not listen on %s after 10 s; its log %s says:\n%s"
                   % (node, ", ".join(spec["listen"]), spec["log"], log))


def stop_sshd(lab, node, spec):
    """Stop the node's sshd by the pid in its pid file (only if that pid is this sshd)."""
    pid = sshd_pid(spec)
    if pid is None:
        return False
    lab.note("stop sshd of %s (pid %d)" % (node, pid))
    lab.kill([{"pid": pid}])
    return True


def ssh_reconcile(lab, topo, before):
    """Keys, configuration and a running sshd for every node (option ssh)."""
    if not os.access(SSHD, os.X_OK):
        raise LabError("ssh: %s is missing; install the Debian package openssh-server" % SSHD)
    keygen = lab.module.get_bin_path("ssh-keygen")
    if keygen is None:
        raise LabError("ssh: ssh-keygen is missing; install the Debian package openssh-client")
    keydir = "%s/%s" % (topo["root"], SSH_DIR)
    key = "%s/%s" % (keydir, SSH_KEY)
    _ensure_dir(lab, keydir, 0o700)
    if os.path.isfile(key) and os.path.isfile(key + ".pub"):
        before.add("ssh key %s" % key)
    else:
        _keygen(lab, keygen, key, "podnet lab %s controller" % topo["name"])
    if not lab.check:
        with open(key + ".pub") as fh:
            _write_if_changed(lab, "%s/authorized_keys" % keydir, fh.read(), 0o644, before)
    _write_if_changed(lab, "%s/%s" % (keydir, SSH_PROXY), PROXY_SCRIPT, 0o644, before)
    for node, spec in sshd_files(topo).items():
        _ensure_dir(lab, spec["dir"], 0o700)
        _ensure_dir(lab, spec["privsep_dir"], 0o755)  # /run/sshd in the node's view
        _ensure_dir(lab, spec["home"], 0o700)  # root's home directory in the node's SSH sessions
        fresh_key = False
        if os.path.isfile(spec["host_key"]):
            before.add("ssh host key %s" % spec["host_key"])
        else:
            _keygen(lab, keygen, spec["host_key"], node)
            fresh_key = True
        changed = _write_if_changed(lab, spec["config_path"], spec["config"], 0o600, before)
        running = sshd_pid(spec, lab.netns_id(node)) is not None
        if running and (changed or fresh_key):
            stop_sshd(lab, node, spec)
            running = False
        if running:
            before.add("sshd %s listening %s" % (node, " ".join(spec["listen"])))
        else:
            start_sshd(lab, topo, node, spec)


def ssh_facts(topo):
    facts = set()
    if not topo["ssh"]:
        return facts
    facts.add("ssh key %s/%s/%s" % (topo["root"], SSH_DIR, SSH_KEY))
    facts.add("file %s/%s/authorized_keys" % (topo["root"], SSH_DIR))
    facts.add("file %s/%s/%s" % (topo["root"], SSH_DIR, SSH_PROXY))
    for node, spec in sshd_files(topo).items():
        facts.add("ssh host key %s" % spec["host_key"])
        facts.add("file %s" % spec["config_path"])
        facts.add("sshd %s listening %s" % (node, " ".join(spec["listen"])))
    return facts


def ssh_remove(lab, topo, nodes, before):
    """Stop every node's sshd (by pid), remove the SSH files and the controller namespace."""
    for node in nodes:
        spec = {"pid_file": "%s/%s/%s/sshd.pid" % (topo["root"], node, SSHD_DIR),
                "config_path": "%s/%s/%s/sshd_config" % (topo["root"], node, SSHD_DIR)}
        if stop_sshd(lab, node, spec):
            before.add("sshd %s" % node)
        node_dir = "%s/%s/%s" % (topo["root"], node, SSHD_DIR)
        if os.path.isdir(node_dir):
            before.add("directory %s" % node_dir)
            lab.note("remove %s" % node_dir)
            if not lab.check:
                shutil.rmtree(node_dir)
    keydir = "%s/%s" % (topo["root"], SSH_DIR)
    if os.path.isdir(keydir):
        before.add("directory %s" % keydir)
        lab.note("remove %s" % keydir)
        if not lab.check:
            shutil.rmtree(keydir)
    ctl = topo["controller"]
    killed = []
    if lab.netns_state(ctl) != "missing":
        before.add("netns %s" % ctl)
        killed = lab.lab_processes([ctl], [])
        lab.kill(killed)
        lab.run_change([lab.ip, "netns", "delete", ctl])
    return killed


# --------------------------------------------------------------------------
# router advertisements (option router_advertisements)


def ra_pid(spec, nsid=None):
    """PID of the running RA sender (its program in the command line)."""
    return _pid_from_file(spec["pid_file"], spec["program"], nsid)


def stop_ra(lab, spec):
    """Stop the RA sender by the pid in its pid file (only if that pid is this sender)."""
    pid = ra_pid(spec)
    if pid is None:
        return []
    lab.note("stop the router advertisement sender (pid %d)" % pid)
    procs = [{"pid": pid, "comm": "python3", "netns": None, "reason": "ra sender"}]
    lab.kill(procs)
    return procs


def nodes_with_ra_route(lab, topo):
    """Nodes whose kernel holds an IPv6 default route learned from router advertisements."""
    found = []
    for node in topo["node_names"]:
        rc, out, _err = lab.run([lab.ip, "-n", node, "-6", "-j", "route", "show", "default", "proto", "ra"])
        if rc == 0 and out.strip() not in ("", "[]"):
            found.append(node)
    return found


def ra_reconcile(lab, topo, before):
    """The router's RA sender runs with the lab's settings, and every node holds its RA default route."""
    spec = ra_files(topo)
    _ensure_dir(lab, spec["dir"], 0o755)
    program_changed = _write_if_changed(lab, spec["program"], RA_SCRIPT, 0o644, before)
    settings_changed = _write_if_changed(lab, spec["settings"], spec["settings_text"], 0o644, before)
    pid = ra_pid(spec, lab.netns_id(topo["router"]))
    if pid is not None and program_changed:
        stop_ra(lab, spec)
        pid = None
    if pid is not None:
        before.add("router advertisements %s eth0" % topo["router"])
        if settings_changed and not lab.check:
            lab.note("send SIGHUP to the router advertisement sender (pid %d): new settings" % pid)
            os.kill(pid, signal.SIGHUP)
    else:
        lab.note("start the router advertisement sender in %s: %s" % (topo["router"], " ".join(spec["argv"])))
        if not lab.check:
            if os.path.lexists(spec["pid_file"]):
                os.unlink(spec["pid_file"])
            with open(spec["log"], "ab") as log:
                os.set_inheritable(log.fileno(), True)
                proc_pid = os.fork()
                if proc_pid == 0:  # pragma: no cover - the child
                    try:
                        os.setsid()
                        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                        os.dup2(log.fileno(), 1)
                        os.dup2(log.fileno(), 2)
                        os.execvp(spec["argv"][0], spec["argv"])
                    finally:
                        os._exit(127)
            deadline = time.monotonic() + 35
            while ra_pid(spec) is None:
                done, _status = os.waitpid(proc_pid, os.WNOHANG)
                if done or time.monotonic() > deadline:
                    raise LabError("the router advertisement sender did not start; its log %s says:\n%s"
                                   % (spec["log"], _tail(spec["log"])))
                time.sleep(0.05)
    if lab.check or topo["ra_lifetime"] == 0:
        return
    # every node learns its default route from the advertisements before the lab is ready
    deadline = time.monotonic() + 20
    missing = [n for n in topo["node_names"] if n not in nodes_with_ra_route(lab, topo)]
    hup_at = time.monotonic() + 3
    while missing:
        if time.monotonic() > deadline:
            raise LabError("nodes %s hold no IPv6 default route learned from the router's advertisements after 20 s; "
                           "the sender's log %s says:\n%s" % (", ".join(missing), spec["log"], _tail(spec["log"])))
        if time.monotonic() > hup_at:
            pid = ra_pid(spec)
            if pid is not None:
                os.kill(pid, signal.SIGHUP)  # advertise again at once
            hup_at = time.monotonic() + 3
        time.sleep(0.1)
        missing = [n for n in missing if n not in nodes_with_ra_route(lab, topo)]


def ra_remove(lab, topo, before):
    """Stop the RA sender (by pid) and remove its files."""
    spec = ra_files(topo)
    procs = stop_ra(lab, spec)
    if procs:
        before.add("router advertisements %s eth0" % topo["router"])
    if os.path.isdir(spec["dir"]):
        before.add("directory %s" % spec["dir"])
        lab.note("remove %s" % spec["dir"])
        if not lab.check:
            shutil.rmtree(spec["dir"])
    return procs


def _tail(path):
    try:
        with open(path) as fh:
            return fh.read()[-2000:]
    except OSError:
        return "(no log)"


def _write(path, content):
    atomic_write(path, content, mode=0o644, create_dirs=True)


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
            _write(os.path.join(topo["root"], STATE_FILE), json.dumps(merged, indent=1) + "\n")
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
        _write(os.path.join(topo["root"], STATE_FILE), json.dumps(wanted_record, indent=1) + "\n")
    after = desired_facts(want, files) | {"record %s/%s" % (topo["root"], STATE_FILE)} | ssh_facts(topo)
    if topo["router_advertisements"]:
        spec = ra_files(topo)
        after |= {"file %s" % spec["program"], "file %s" % spec["settings"],
                  "router advertisements %s eth0" % topo["router"]}
    return before, after, killed, want


def absent(module, lab, topo):
    record = read_record(topo["root"], topo["name"])
    names = [topo["switch"], topo["router"], topo["external"]]
    nodes = [n for n in list(record.get("nodes", [])) + list(topo["node_names"]) if n not in names]
    names += nodes
    before = set()
    stopped = ssh_remove(lab, topo, list(dict.fromkeys(nodes)), before)
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="podnet"),
            nodes=dict(type="list", elements="str"),
            node_count=dict(type="int"),
            subnet=dict(type="str", default="172.31.250.0/24"),
            subnet_ipv6=dict(type="str"),
            external_cidr=dict(type="str", default="203.0.113.0/24"),
            external_cidr_ipv6=dict(type="str"),
            root=dict(type="path"),
            hide_services=dict(type="bool", default=True),
            inventory_vars=dict(type="dict"),
            ssh=dict(type="bool", default=False),
            static_neighbours=dict(type="bool", default=True),
            router_advertisements=dict(type="bool", default=False),
            ra_interval=dict(type="int", default=10),
            ra_lifetime=dict(type="int", default=1800),
            node_ip=dict(type="bool", default=True),
            segments=dict(type="int", default=1),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        mutually_exclusive=[("nodes", "node_count")],
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="podnet.lab.lab_topology needs root (network namespaces, mounts)")
    try:
        topo = build_topology(module.params)
    except LabError as exc:
        module.fail_json(msg="invalid lab parameters:\n%s" % exc, errors=str(exc).split("\n"))
    topo["inventory_vars"] = dict(module.params["inventory_vars"] or {})
    lab = Lab(module)
    try:
        if module.params["state"] == "present":
            before, after, killed, want = present(module, lab, topo)
            namespaces = want["namespaces"]
        else:
            before, after, killed, namespaces = absent(module, lab, topo)
    except LabError as exc:
        module.fail_json(msg=str(exc), commands=lab.commands)
    result = {
        "changed": bool(lab.commands or killed),
        "commands": lab.commands,
        "killed": killed,
        "namespaces": namespaces,
        "root": topo["root"],
        "diff": {"before": render(before), "after": render(after)},
    }
    if module.params["state"] == "present":
        result.update(
            nodes={n: topo["nodes"][n] for n in topo["node_names"]},
            router=topo["router_info"],
            external=topo["external_info"],
            switch={"netns": topo["switch"], "bridge": BRIDGE,
                    "bridges": [seg["bridge"] for seg in topo["segments"]]},
            segments=topo["segments"],
            inventory=build_inventory(topo, topo["inventory_vars"]),
            inventory_vars=topo["inventory_vars"],
        )
        if topo["ssh"]:
            result["controller"] = topo["controller_info"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
