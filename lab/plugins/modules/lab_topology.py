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
  code_cache:
    description:
      - Directory of the nodes' compile cache, the C(podnet_netns_code_cache) of the returned RV(inventory) (see
        the C(podnet.lab.netns) connection), the code the nodes' Python compiles from module zips, kept for the
        next module call of any node using the same directory.
      - Defaults to C(<root>/code-cache), removed with the lab. A directory outside O(root) can be shared by
        several labs (entries are named by the SHA-256 of their source, so labs of different code never mix);
        the lab never removes it. Not recorded in C(lab.json).
      - Must be absolute, without C(:).
    type: path
    version_added: 0.2.0
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
  inventory_dir:
    version_added: 0.2.0
    description:
      - With O(state=present), write the lab's inventory (RV(inventory) as YAML, under a header that says how to
        remove the lab) to C(<inventory_dir>/hosts.yml), the directory made when missing; the file is replaced
        atomically and only when its text changes. Needs PyYAML (it comes with ansible-core).
    type: path
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

- name: A two-node lab whose inventory is written to inventories/lab/hosts.yml
  podnet.lab.lab_topology:
    name: pair
    node_count: 2
    inventory_dir: inventories/lab

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
inventory_path:
  description: The inventory file written (or, in check mode, that would be written), with O(inventory_dir).
  returned: state=present and inventory_dir
  type: str
  sample: inventories/lab/hosts.yml
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

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.lab.plugins.module_utils.lab_build import (
    absent,
    present,
)
from ansible_collections.podnet.lab.plugins.module_utils.lab_inventory import FILE_NAME, inventory_text, write_inventory
from ansible_collections.podnet.lab.plugins.module_utils.lab_machine import Lab
from ansible_collections.podnet.lab.plugins.module_utils.lab_reconcile import render
from ansible_collections.podnet.lab.plugins.module_utils.lab_topology import (
    BRIDGE,
    LabError,
    build_inventory,
    build_topology,
)


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
            code_cache=dict(type="path"),
            hide_services=dict(type="bool", default=True),
            inventory_vars=dict(type="dict"),
            ssh=dict(type="bool", default=False),
            static_neighbours=dict(type="bool", default=True),
            router_advertisements=dict(type="bool", default=False),
            ra_interval=dict(type="int", default=10),
            ra_lifetime=dict(type="int", default=1800),
            node_ip=dict(type="bool", default=True),
            segments=dict(type="int", default=1),
            inventory_dir=dict(type="path"),
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
        directory = module.params["inventory_dir"]
        if directory:
            text = inventory_text(topo["name"], result["inventory"],
                                  topo["controller_info"]["run_prefix"] if topo["ssh"] else None)
            result["inventory_path"] = os.path.join(directory, FILE_NAME)
            try:
                if write_inventory(directory, text, module.check_mode):
                    result["changed"] = True
                    result["commands"].append("write %s" % result["inventory_path"])
            except (OSError, RuntimeError) as exc:
                module.fail_json(msg="cannot write the lab inventory in %s: %s" % (directory, exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
