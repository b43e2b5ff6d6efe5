# SPDX-License-Identifier: Apache-2.0
"""The modules podnet.cluster.probe_pod and podnet.cluster.probe on lab nodes: idempotence, check mode, a stale
pod (its holder killed) made again with its CNI lease released, partial leftovers, and a failed node in verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

PLAYBOOK = """
- name: CNI probe pod on node1
  hosts: node1
  gather_facts: false
  vars:
    pod: &pod
      name: t-cni
      mode: cni
      conflist: "{{ podnet_cni_conf_dir }}/10-podnet.conflist"
      cni_bin_dirs: [/opt/cni/bin, /usr/lib/cni]
      state_dir: "{{ podnet_verify_state_dir }}"
  tasks:
    - {name: c0 check mode, podnet.cluster.probe_pod: *pod, check_mode: true, register: c0}
    - {name: c1 create, podnet.cluster.probe_pod: *pod, register: c1}
    - {name: c2 again, podnet.cluster.probe_pod: *pod, register: c2}
    - name: s1 sockets listening in the pod
      ansible.builtin.command: "nsenter --net={{ c1.netns }} ss -Hltn"
      changed_when: false
      register: s1
    - name: p1 probe the pod from the node, and the gateway from the pod
      podnet.cluster.probe:
        timeout: 1
        probes:
          - {id: node-to-pod, target: "{{ c1.ips[0] }}"}
          - {id: pod-to-gw-closed-port, source_netns: "{{ c1.netns }}", target: 10.244.1.1, port: 9}
      register: p1
    - {name: kill the holder, ansible.builtin.command: "kill -9 {{ c1.pid }}", changed_when: true}
    - {name: c3 stale pod made again, podnet.cluster.probe_pod: *pod, register: c3}
    - name: c4 remove (check mode)
      podnet.cluster.probe_pod: {name: t-cni, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}
      check_mode: true
      register: c4
    - {name: c5 remove, podnet.cluster.probe_pod: {name: t-cni, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}, register: c5}
    - {name: c6 remove again, podnet.cluster.probe_pod: {name: t-cni, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}, register: c6}
    - name: h1 a node server on the node IPs only
      podnet.cluster.probe_pod: {name: t-host, mode: host, bind: [172.30.77.11, "fd30:77::11"], state_dir: "{{ podnet_verify_state_dir }}"}
      register: h1
    - name: s2 sockets listening on the node
      ansible.builtin.command: ss -Hltn sport = 47300
      changed_when: false
      register: s2
    - name: p3 probe the node server on its node IP and on the bridge address
      podnet.cluster.probe:
        timeout: 1
        probes:
          - {id: node-ip, target: 172.30.77.11}
          - {id: bridge-ip, target: 10.244.1.1}
      register: p3
    - {name: h2 remove the node server, podnet.cluster.probe_pod: {name: t-host, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}, register: h2}
    - name: h3 a node server without bind is refused
      podnet.cluster.probe_pod: {name: t-nobind, mode: host, state_dir: "{{ podnet_verify_state_dir }}"}
      register: h3
      ignore_errors: true
    - name: a1 a node server with a lifetime of 4 seconds
      podnet.cluster.probe_pod: &ageing {name: t-age, mode: host, bind: [172.30.77.11], lifetime: 4, state_dir: "{{ podnet_verify_state_dir }}"}
      register: a1
    - {name: half of its lifetime passes, ansible.builtin.command: sleep 2.2, changed_when: false}
    - {name: a2 an ageing server is made again, podnet.cluster.probe_pod: *ageing, register: a2}
    - {name: a3 remove it, podnet.cluster.probe_pod: {name: t-age, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}}
    # 5 s: long enough for the module to finish its pod (a busy machine took more than 1 s), short enough to end
    # while node2's play runs; l2 waits for its end
    - name: l1 a pod whose server lives 5 seconds
      podnet.cluster.probe_pod: {name: t-short, mode: cni, lifetime: 5, conflist: "{{ podnet_cni_conf_dir }}/10-podnet.conflist",
                                 state_dir: "{{ podnet_verify_state_dir }}"}
      register: l1

- name: veth probe pod on node2
  hosts: node2
  gather_facts: false
  vars:
    pod: &veth
      name: t-veth
      mode: veth
      bridge: cbr0
      addresses: [10.244.2.200/24]
      gateways: [10.244.2.1]
      state_dir: "{{ podnet_verify_state_dir }}"
  tasks:
    - {name: v1 create, podnet.cluster.probe_pod: *veth, register: v1}
    - {name: v2 again, podnet.cluster.probe_pod: *veth, register: v2}
    - name: v3 the same name with another address is made again
      podnet.cluster.probe_pod: {name: t-veth, mode: veth, addresses: [10.244.2.201/24], gateways: [10.244.2.1], state_dir: "{{ podnet_verify_state_dir }}"}
      register: v3
    - name: p2 probe across nodes from the veth pod (to the node1 server that is not there)
      podnet.cluster.probe:
        timeout: 1
        probes:
          - {id: to-node1, source_netns: "{{ v3.netns }}", target: 172.30.77.11}
          - {id: self, target: 10.244.2.201}
      register: p2
    - {name: v4 remove, podnet.cluster.probe_pod: {name: t-veth, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}, register: v4}
    - name: a leftover veth without a record
      ansible.builtin.command: "ip link add {{ leftover }} type veth peer name {{ leftover }}x"
      changed_when: true
    - {name: v5 remove the leftover, podnet.cluster.probe_pod: {name: t-left, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}, register: v5}
    - name: v6 bad bridge
      podnet.cluster.probe_pod: {name: t-bad, mode: veth, bridge: nosuch, addresses: [10.244.2.202/24],
                                 state_dir: "{{ podnet_verify_state_dir }}"}
      register: v6
      ignore_errors: true

- name: Remove the pod whose server ended on its own
  hosts: node1
  gather_facts: false
  tasks:
    - name: l2 the server of t-short ends on its own (its process gone, or a zombie)
      ansible.builtin.shell: |
        stat=$(cat /proc/{{ l1.pid }}/stat 2>/dev/null) || exit 0
        stat=${stat##*) }
        [ "${stat%% *}" = Z ]
      changed_when: false
      register: l2
      until: l2.rc == 0
      retries: 30
      delay: 1
    - name: l3 remove the pod whose server ended on its own
      podnet.cluster.probe_pod: {name: t-short, state: absent, state_dir: "{{ podnet_verify_state_dir }}"}
      register: l3
"""


def result(run, task, host):
    return run.task(task)[host]


def listeners(ss_output):
    return sorted(line.split()[3] for line in ss_output.splitlines() if line.strip())


def wait_gone(pid, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not os.path.exists("/proc/%d" % pid):
            return True
        with open("/proc/%d/stat" % pid) as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        time.sleep(0.2)
    return False


def test_probe_pod_lifecycle(lab):
    playbook = lab.root / "probe_pod.yml"
    playbook.write_text(PLAYBOOK)
    leftover = "pdv" + hashlib.sha1(b"t-left").hexdigest()[:11]
    run = lab.playbook("-e", json.dumps({"leftover": leftover}), playbook=str(playbook))
    assert run.rc == 0, run.text
    # the short-lived server exits on its own, nobody removes it (the run's last play waits for that, l2, before it
    # removes the pod, l3: a server still running would have failed the run); then its leftovers are cleaned
    l1 = result(run, "l1 a pod whose server lives 5 seconds", "node1")
    assert l1["changed"] and l1["lifetime"] == 5
    assert wait_gone(l1["pid"]), "the server outlived its lifetime of 5 s"
    l3 = result(run, "l3 remove the pod whose server ended on its own", "node1")
    assert not [a for a in l3.get("actions", []) if "stopped the probe server" in a], \
        "the removal stopped a server that should have ended on its own: %s" % l3
    assert lab.processes() == [] and lab.state_dirs_left() == []
    leases = lab.root / "node1" / "leases" / "podnet"
    assert not [p.name for p in leases.iterdir() if p.name[0].isdigit() or ":" in p.name], "leases left"

    # a pod's server listens on the pod's own addresses only, not on every address of its namespace
    c1_listen = result(run, "c1 create", "node1")["listening"]
    assert listeners(result(run, "s1 sockets listening in the pod", "node1")["stdout"]) == sorted(c1_listen)
    assert sorted(c1_listen) == sorted(
        ("[%s]:47300" if ":" in ip else "%s:47300") % ip for ip in result(run, "c1 create", "node1")["ips"])
    # a node server on the addresses it was given
    h1 = result(run, "h1 a node server on the node IPs only", "node1")
    assert sorted(h1["listening"]) == ["172.30.77.11:47300", "[fd30:77::11]:47300"]
    assert listeners(result(run, "s2 sockets listening on the node", "node1")["stdout"]) == sorted(h1["listening"])
    p3 = {p["id"]: p for p in result(run, "p3 probe the node server on its node IP and on the bridge address",
                                     "node1")["probes"]}
    assert p3["node-ip"]["ok"] and p3["node-ip"]["server"] == "t-host"
    assert not p3["bridge-ip"]["ok"] and "refused" in p3["bridge-ip"]["error"]
    assert result(run, "h2 remove the node server", "node1")["changed"]
    a1, a2 = result(run, "a1 a node server with a lifetime of 4 seconds", "node1"), result(
        run, "a2 an ageing server is made again", "node1")
    assert a2["changed"] and a2["pid"] != a1["pid"], "a server with less than half its lifetime left was reused"
    h3 = result(run, "h3 a node server without bind is refused", "node1")
    assert h3["failed"] and "mode=host needs bind" in h3["msg"]

    c0 = result(run, "c0 check mode", "node1")
    assert c0["changed"] and "pid" not in c0
    c1 = result(run, "c1 create", "node1")
    assert c1["changed"] and c1["netns"] == "/proc/%d/ns/net" % c1["pid"]
    assert [a.split("/")[0] for a in c1["addresses"]] == c1["ips"]
    assert c1["ips"][0].startswith("10.244.1.") and c1["ips"][1].startswith("fd00:10:244:1::")
    assert c1["actions"][1:4] == ["CNI ADD bridge", "CNI ADD portmap", "CNI ADD loopback"]
    assert c1["actions"][4].startswith("the probe server (pid %d) listens on 10.244.1." % c1["pid"])
    c2 = result(run, "c2 again", "node1")
    assert not c2["changed"] and c2["pid"] == c1["pid"] and c2["ips"] == c1["ips"]

    p1 = {p["id"]: p for p in result(run, "p1 probe the pod from the node, and the gateway from the pod",
                                     "node1")["probes"]}
    assert p1["node-to-pod"]["ok"] and p1["node-to-pod"]["seen"] == "10.244.1.1"
    assert p1["node-to-pod"]["server"] == "t-cni"
    assert not p1["pod-to-gw-closed-port"]["ok"] and "refused" in p1["pod-to-gw-closed-port"]["error"]

    c3 = result(run, "c3 stale pod made again", "node1")
    assert c3["changed"] and c3["pid"] != c1["pid"]
    assert c3["actions"][:3] == ["CNI DEL loopback", "CNI DEL portmap", "CNI DEL bridge"]
    assert result(run, "c4 remove (check mode)", "node1")["changed"]
    c5 = result(run, "c5 remove", "node1")
    assert c5["changed"] and "stopped the probe server (pid %d)" % c3["pid"] in c5["actions"]
    assert not result(run, "c6 remove again", "node1")["changed"]
    v1 = result(run, "v1 create", "node2")
    assert v1["changed"] and v1["ips"] == ["10.244.2.200"] and v1["host_interface"].startswith("pdv")
    assert not result(run, "v2 again", "node2")["changed"]
    v3 = result(run, "v3 the same name with another address is made again", "node2")
    assert v3["changed"] and v3["ips"] == ["10.244.2.201"] and v3["pid"] != v1["pid"]
    p2 = {p["id"]: p for p in result(run, "p2 probe across nodes from the veth pod (to the node1 server that is not there)",
                                     "node2")["probes"]}
    assert not p2["to-node1"]["ok"] and "refused" in p2["to-node1"]["error"]  # routed there and back
    assert p2["self"]["ok"] and p2["self"]["seen"] == "10.244.2.1"
    assert result(run, "v4 remove", "node2")["changed"]
    assert result(run, "v5 remove the leftover", "node2")["changed"]
    v6 = result(run, "v6 bad bridge", "node2")
    assert v6["failed"] and "the bridge nosuch does not exist" in v6["msg"]
    assert "pdv" not in lab.ip("node2", "-o", "link")


def test_verify_reports_a_node_whose_pod_cannot_start(lab):
    # node2 is the veth node: a bridge that does not exist makes its probe pod fail to start
    run = lab.verify("-e", json.dumps({"podnet_bridge": "nosuch"}))
    assert run.rc != 0, run.text
    assert "the bridge nosuch does not exist" in result(run, "Start this node's two probe pods and its probe server", "node2")["msg"]
    summary = run.result
    assert summary["nodes"] == ["node1", "node2", "node3"]
    failed = {(f["check"], f["source"], f["target"]) for f in summary["failures"]}
    assert ("pod_pod", "node1", "node2") in failed and ("pod_pod", "node2", "node1") in failed
    assert not [f for f in failed if "node2" not in f[1:]], "only cells involving node2 fail"
    assert ("egress", "node1", "external") not in failed, "the external server outlived node2's failure"
    assert "(no probe pod)" in run.report
    assert run.failed_hosts() == ["node1", "node2", "node3"]
