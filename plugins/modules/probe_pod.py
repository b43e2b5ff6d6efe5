#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Module podnet.cluster.probe_pod: a throw-away probe pod (or node-side probe server) for verify."""

from __future__ import annotations

DOCUMENTATION = r"""
module: probe_pod
short_description: Start or remove a probe pod (or a node-side probe server) for the verify playbook
version_added: 0.1.0
author: podnet.cluster maintainers (!UNKNOWN)
description:
  - Starts a small TCP server speaking the podnet probe protocol (see C(podnet.cluster.probe)) as a detached
    process (new session, standard streams to a log file), and, for a pod, gives it its own network
    namespace and wires that namespace to the node's pod network like a real pod.
  - The server listens only on its probe addresses (a pod's own global addresses once it is wired; for
    O(mode=host) the addresses of O(bind)), never on every address of the host; it handles at most
    O(max_threads) connections at once and exits on its own after O(lifetime) seconds, so that an
    interrupted run leaves no server behind for long (the next run, or O(state=absent), removes the rest of
    a pod whose server is gone - its CNI lease and its record).
  - "O(mode=cni): the server is started under C(unshare --net), so its network namespace lives exactly as
    long as the process; the namespace is referred to as C(/proc/PID/ns/net), never as a named namespace
    under C(/run/netns) (on lab nodes C(/run) is private to the node). The plugins of the CNI configuration
    list O(conflist) are then run in order with C(CNI_COMMAND=ADD), C(CNI_NETNS=/proc/PID/ns/net),
    C(CNI_IFNAME=)O(ifname) and C(CNI_CONTAINERID=)O(name); each plugin gets its own entry of the list with
    the list's C(cniVersion) and C(name) added and the previous plugin's result as C(prevResult), as a
    container runtime does (a conflist is not a plugin configuration)."
  - "O(mode=veth), for nodes without CNI: a veth pair, one end (named C(pdv) + a hash of O(name)) added to
    O(bridge), the other moved into the pod as O(ifname) with O(addresses) and default routes via
    O(gateways)."
  - "O(mode=host): only the server, in the node's own network namespace, listening on O(bind) (the node's
    node IPs), so that pods can probe the node."
  - What was made (PID and start time of the server, the CNI configuration and result, the veth name) is
    recorded in C(<state_dir>/<name>.json). O(state=absent) undoes it from that record, in reverse - CNI
    C(DEL) for every plugin that was added (with the stored result as C(prevResult)), the veth deleted, the
    process killed by its recorded PID (only if that PID still runs this probe server with the recorded
    start time). Partial leftovers (a dead process, a missing namespace, a veth without record) are
    tolerated; both states are idempotent.
  - O(state=present) on a pod that is recorded, running, configured the same and with at least half of its
    O(lifetime) left is left alone (not changed); a stale, different or ageing one is removed and made
    again.
  - Target side, Python 3.8 or later (the oldest target Python of ansible-core 2.19; tested), standard
    library, root. Needs C(unshare) and C(nsenter) (util-linux) and C(ip) (iproute2).
options:
  name:
    description:
      - Name of the pod or server; the CNI container ID, the server's name in probe answers and the name of
        the record. Letters, digits, C(.), C(_), C(-); at most 63 characters.
      - One of O(name) and O(pods) is required.
    type: str
  pods:
    version_added: 0.2.0
    description:
      - Several pods or servers in one call, made (or removed) in list order; each item gives its own
        O(name), O(mode), O(bind), O(addresses) and O(gateways), the other options apply to all of them.
        The result lists each one's result in RV(pods). The first that fails stops the call (the ones made
        before it stay, recorded, for O(state=absent) to remove).
    type: list
    elements: dict
    suboptions:
      name:
        description: As O(name).
        type: str
        required: true
      mode:
        description: As O(mode).
        type: str
        choices: [cni, veth, host]
      bind:
        description: As O(bind).
        type: list
        elements: str
        default: []
      addresses:
        description: As O(addresses).
        type: list
        elements: str
        default: []
      gateways:
        description: As O(gateways).
        type: list
        elements: str
        default: []
  state:
    description: Whether the probe pod should exist.
    type: str
    choices: [present, absent]
    default: present
  mode:
    description:
      - How the pod is made (see the description). Required with O(state=present); O(state=absent) uses the
        recorded mode.
    type: str
    choices: [cni, veth, host]
  port:
    description: TCP port the server listens on, on its probe addresses only.
    type: int
    default: 47300
  bind:
    version_added: 0.2.0
    description:
      - The addresses the server of O(mode=host) listens on (one socket each; wildcard addresses are
        refused). Required with O(mode=host); not allowed with the pod modes, whose server listens on the
        pod's own global addresses.
      - An IPv6 address still in duplicate address detection is waited for, up to 5 seconds.
    type: list
    elements: str
    default: []
  lifetime:
    version_added: 0.2.0
    description:
      - Seconds after its start at which the server exits on its own, whatever happens to the run that
        started it (C(0) - never). A pod's network namespace goes with its server.
    type: float
    default: 1800
  max_threads:
    version_added: 0.2.0
    description: Connections the server handles at once (one thread each); more wait in the listen backlog.
    type: int
    default: 32
  conflist:
    description: The CNI configuration list used with O(mode=cni).
    type: path
    default: /etc/cni/net.d/10-podnet.conflist
  cni_bin_dirs:
    description: Directories searched, in order, for the CNI plugin binaries (also passed as C(CNI_PATH)).
    type: list
    elements: path
    default: [/opt/cni/bin, /usr/lib/cni]
  ifname:
    description: Name of the pod's interface (C(CNI_IFNAME)).
    type: str
    default: eth0
  bridge:
    description: The node's pod bridge, for O(mode=veth).
    type: str
    default: cbr0
  addresses:
    description:
      - The pod's addresses with prefix length (C(10.244.1.254/24), C(fd00:10:244:1::ffff/64)), for
        O(mode=veth); required with it.
    type: list
    elements: str
    default: []
  gateways:
    description: Default gateways of the pod (one per family), for O(mode=veth); usually the bridge addresses.
    type: list
    elements: str
    default: []
  state_dir:
    description:
      - Directory of the records, the server script (C(podnet_probe.py)) and the servers' logs. Created
        C(0700); removed when its last record goes.
    type: path
    default: /run/podnet-verify
  timeout:
    description: Seconds to wait for the server to listen, and for each CNI plugin call (times 6).
    type: float
    default: 10
attributes:
  check_mode:
    support: full
    description: Reports what would be started or removed; starts, runs and kills nothing.
  diff_mode:
    support: full
    description: The probe pod's description (addresses, port, lifetime) before and after, only with C(--diff).
notes:
  - The pod is a process, not a container. It shares the node's file system and PID namespace; only its
    network namespace is its own. It is meant to live for the duration of one verify run.
  - Nothing is written to the CNI configuration directory; host-local leases live where the configuration
    says (C(ipam.dataDir), default C(/var/lib/cni/networks/<name>)) and are released by C(DEL).
seealso:
  - module: podnet.cluster.probe
"""

EXAMPLES = r"""
- name: A probe pod wired by the node's CNI configuration
  podnet.cluster.probe_pod:
    name: podnet-verify-node1
    mode: cni
    conflist: /etc/cni/net.d/10-podnet.conflist
  register: pod

- name: A probe pod on a node without CNI, on the bridge cbr0
  podnet.cluster.probe_pod:
    name: podnet-verify-node2
    mode: veth
    bridge: cbr0
    addresses: [10.244.1.254/24, "fd00:10:244:1:ffff:ffff:ffff:ffff/64"]
    gateways: [10.244.1.1, "fd00:10:244:1::1"]

- name: A probe server in the node's own network namespace, on the node's IP only, for at most 10 minutes
  podnet.cluster.probe_pod:
    name: podnet-verify-node-node1
    mode: host
    bind: [192.168.50.11]
    lifetime: 600

- name: A node's two probe pods and its probe server, in one call
  podnet.cluster.probe_pod:
    pods:
      - {name: podnet-verify-pod-node1, mode: cni}
      - {name: podnet-verify-peer-node1, mode: cni}
      - {name: podnet-verify-node-node1, mode: host, bind: [192.168.50.11]}
    conflist: /etc/cni/net.d/10-podnet.conflist

- name: Remove the pod (CNI DEL, veth removed, process killed)
  podnet.cluster.probe_pod:
    name: podnet-verify-node1
    state: absent
"""

RETURN = r"""
name:
  description: The pod's name.
  returned: always (with O(pods) - in each item of RV(pods))
  type: str
  sample: podnet-verify-node1
mode:
  description: How the pod was made (C(null) after O(state=absent) of an unknown pod).
  returned: always (with O(pods) - in each item of RV(pods))
  type: str
  sample: cni
pid:
  description: PID of the probe server (the process that holds the pod's network namespace).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: int
  sample: 4242
netns:
  description: The pod's network namespace file, C(/proc/PID/ns/net); C(null) for O(mode=host).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: str
  sample: /proc/4242/ns/net
port:
  description: The server's TCP port.
  returned: when present (with O(pods) - in each item of RV(pods))
  type: int
  sample: 47300
listening:
  description: The endpoints the server listens on, as it reported them once its sockets were bound.
  returned: when present (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: ["10.244.1.2:47300", "[fd00:10:244:1::2]:47300"]
lifetime:
  description: The server's lifetime in seconds (C(0) - none).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: float
  sample: 1800
expires:
  description: When the server exits on its own (seconds since the epoch; C(null) without a lifetime).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: float
  sample: 1767225600.0
addresses:
  description:
    - The pod's global addresses with prefix length, read from the pod's namespace (O(mode=host) - the
      node's global addresses).
  returned: when present (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: [10.244.1.2/24, "fd00:10:244:1::2/64"]
ips:
  description: The same addresses without prefix length.
  returned: when present (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: [10.244.1.2, "fd00:10:244:1::2"]
host_interface:
  description: The node-side end of the veth pair (O(mode=veth)).
  returned: when present and mode is veth
  type: str
  sample: pdv3f2a9c01b7e
cni_result:
  description: The result of the last CNI plugin's ADD (O(mode=cni)).
  returned: when present and mode is cni
  type: dict
state_file:
  description: The record of the pod.
  returned: always (with O(pods) - in each item of RV(pods))
  type: str
  sample: /run/podnet-verify/podnet-verify-node1.json
pods:
  description: With O(pods) - one result per pod, in list order, each with the keys above.
  returned: with pods
  type: list
  elements: dict
actions:
  description: What the module did, in order.
  returned: always (with O(pods) - in each item of RV(pods))
  type: list
  elements: str
  sample: ["started the probe server (pid 4242) in a new network namespace", "CNI ADD bridge", "CNI ADD portmap"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.podnet.cluster.plugins.module_utils.pod import one_pod, param_errors
from ansible_collections.podnet.cluster.plugins.module_utils.probe import DEFAULT_LIFETIME, DEFAULT_MAX_THREADS

POD_KEYS = ("name", "mode", "bind", "addresses", "gateways")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            pods=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                mode=dict(type="str", choices=["cni", "veth", "host"]),
                bind=dict(type="list", elements="str", default=[]),
                addresses=dict(type="list", elements="str", default=[]),
                gateways=dict(type="list", elements="str", default=[]),
            )),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            mode=dict(type="str", choices=["cni", "veth", "host"]),
            port=dict(type="int", default=47300),
            conflist=dict(type="path", default="/etc/cni/net.d/10-podnet.conflist"),
            cni_bin_dirs=dict(type="list", elements="path", default=["/opt/cni/bin", "/usr/lib/cni"]),
            ifname=dict(type="str", default="eth0"),
            bridge=dict(type="str", default="cbr0"),
            addresses=dict(type="list", elements="str", default=[]),
            gateways=dict(type="list", elements="str", default=[]),
            state_dir=dict(type="path", default="/run/podnet-verify"),
            timeout=dict(type="float", default=10.0),
            bind=dict(type="list", elements="str", default=[]),
            lifetime=dict(type="float", default=DEFAULT_LIFETIME),
            max_threads=dict(type="int", default=DEFAULT_MAX_THREADS),
        ),
        required_one_of=[("name", "pods")],
        mutually_exclusive=[("name", "pods")],
        supports_check_mode=True,
    )
    params = module.params
    if params["pods"] is None:
        items = [dict(params)]
    else:
        items = []
        for item in params["pods"]:
            merged = dict(params)
            merged.update({k: item[k] for k in POD_KEYS if item.get(k) not in (None, [])})
            items.append(merged)
        names = [i["name"] for i in items]
        if len(set(names)) != len(names):
            module.fail_json(msg="pods: a name is listed twice (%s)" % ", ".join(sorted(names)))
    errors = [e for item in items for e in param_errors(item)]
    if errors:
        module.fail_json(msg="; ".join(errors))
    results = []
    for item in items:
        result = one_pod(module, item)
        results.append(result)
        if result.get("failed"):
            break
    for result in results:
        for warning in result.pop("warnings", []):
            module.warn(warning)
        if not module._diff:
            result.pop("diff", None)
    failed = [r for r in results if r.get("failed")]
    if params["pods"] is None:
        result = results[0]
        if failed:
            result.pop("failed")
            module.fail_json(**result)
        module.exit_json(**result)
    out = {"changed": any(r.get("changed") for r in results), "pods": results}
    if module._diff:
        out["diff"] = {"before": "".join(r.get("diff", {}).get("before", "") for r in results),
                       "after": "".join(r.get("diff", {}).get("after", "") for r in results)}
        for r in results:
            r.pop("diff", None)
    if failed:
        module.fail_json(msg=failed[0]["msg"], **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
