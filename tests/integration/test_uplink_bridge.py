# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The l2_bridge uplink move on the lab, over real SSH: podnet.cluster.uplink_bridge and the lab's SSH option.

One dual-stack lab of three nodes built with ``podnet_lab_ssh: true``; every playbook runs inside
the lab's controller namespace (``nsenter --net=/run/netns/<lab>-ctl ansible-playbook``) and
reaches the nodes through their own sshd, as users do. Nothing here is mocked: the kernel moves
the addresses, TCP keeps (or not) its connections, the check pings (or ARPs) the lab router.

Node 1: move over SSH, idempotence, then the exact reverse; bad input. Node 2: a TCP stream from
the lab router to the node survives the move (checked by ARP/NDP this time). Node 3: a check address that does not answer, a bridge
that cuts the gateway, and a controller that cannot reconnect, each rolled back to exactly the
state before. The lab (named pub<pid>) is removed by a finalizer; leftovers of killed runs first.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from lib import rootns
from lib.labtools import BIN, REPO, Lab, in_ns, new_lab, run, settled
from lib.uplinklab import TcpStream, kernel_state, link, same_state

PREFIX = "pub"
SUBNET = "172.30.21.0/24"
SUBNET6 = "fd00:30:21::/64"
GATEWAY, GATEWAY6 = "172.30.21.1", "fd00:30:21::1"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

# --------------------------------------------------------------------------- helpers


def global_addrs(ns: str, dev: str) -> List[str]:
    proc = in_ns(ns, "ip", "-json", "addr", "show", "dev", dev)
    data = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for e in data for a in e["addr_info"]
                  if a.get("scope") == "global")


class Controller:
    """Runs ansible inside the lab's controller namespace, against the lab inventory, over SSH."""

    def __init__(self, lab: Lab, tmp: Path):
        self.lab = lab
        self.tmp = tmp
        self.netns = "%s-ctl" % lab.name

    def play(self, hosts: str, tasks: List[Dict[str, Any]], *options: str, timeout: int = 240,
             env: Dict[str, str] = None):
        """Run one play; return (returncode, {task name: {host: result}}, raw stdout)."""
        path = self.tmp / ("play-%d.yml" % time.monotonic_ns())
        path.write_text(yaml.safe_dump([{"hosts": hosts, "gather_facts": False, "tasks": tasks}]))
        argv = ["nsenter", "--net=/run/netns/%s" % self.netns, "--", str(BIN / "ansible-playbook"),
                "-i", str(self.lab.hosts_yml), str(path)] + list(options)
        env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")),
                   ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="podnet_json",
                   ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "lib" / "callback"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_DEPRECATION_WARNINGS="0", **(env or {}))
        proc = subprocess.run(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("no JSON from ansible-playbook (rc %d):\n%s\n%s"
                                 % (proc.returncode, proc.stdout[-4000:], proc.stderr[-3000:]))
        results = {task["task"]["name"]: task["hosts"] for play in report["plays"] for task in play["tasks"]}
        return proc.returncode, results, proc.stdout

    def uplink(self, node: str, *options: str, env: Dict[str, str] = None, **args: Any):
        base = {"bridge": "br0"} if "uplink_address" in args else {"bridge": "br0", "uplink": "eth0"}
        task = {"name": "uplink", "podnet.cluster.uplink_bridge": dict(base, **args)}
        rc, results, raw = self.play(node, [task], *options, env=env)
        assert "uplink" in results and node in results["uplink"], raw[-4000:]
        return rc, results["uplink"][node]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("lab") / "inventories" / "lab", request, count=3,
                   lab_vars={"podnet_lab_subnet": SUBNET, "podnet_lab_subnet_ipv6": SUBNET6, "podnet_lab_ssh": True})
    # the controller namespace is not in Lab.namespaces: remove it too if the lab's own removal fails
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "delete", "%s-ctl" % spec.name],
                                                stderr=subprocess.DEVNULL, check=False))
    spec.rootns_before = rootns.snapshot()
    spec.first_run = spec.playbook("present")
    return spec


@pytest.fixture(scope="module")
def pristine(lab: Lab) -> Dict[str, Dict[str, Any]]:
    """The kernel state of every node as the lab built it (once its link-local addresses settled)."""
    settled(lab.nodes)
    return {node: kernel_state(node) for node in lab.nodes}


@pytest.fixture
def ctl(lab: Lab, tmp_path) -> Controller:
    return Controller(lab, tmp_path)


BAD_INPUT = {
    "no such uplink": {"bridge": "br0", "uplink": "eth9"},
    "timeouts": {"bridge": "br0", "uplink": "eth0", "check_timeout": 10, "rollback_timeout": 8},
    "bad check address": {"bridge": "br0", "uplink": "eth0", "check_address": ["gateway"]},
    "bridge is a veth": {"bridge": "eth0", "uplink": "lo"},
}


@pytest.fixture(scope="module")
def first_play(lab: Lab, tmp_path_factory):
    """One play over SSH for two tests: "where" on every node (the lab's SSH option), and on node 1 the bad
    input tasks (each ignoring its error), node 1's kernel state read before and after the play."""
    ctl = Controller(lab, tmp_path_factory.mktemp("first-play"))
    node = lab.nodes[0]
    before = kernel_state(node)
    tasks = [{"name": "where", "ansible.builtin.command": "sh -c 'hostname; cat /etc/hostname; echo $SSH_CONNECTION; "
                                                          "echo $HOME; touch ~/.podnet-home; ls -A ~'"}]
    tasks += [{"name": name, "podnet.cluster.uplink_bridge": args, "ignore_errors": True,
               "when": "inventory_hostname == %r" % node} for name, args in BAD_INPUT.items()]
    rc, results, raw = ctl.play("podnet_nodes", tasks)
    return rc, results, raw, before, kernel_state(node)


# --------------------------------------------------------------------------- the lab's SSH option


def test_lab_serves_its_nodes_over_ssh(lab: Lab, pristine, ctl: Controller, first_play):
    for index, node in enumerate(lab.nodes):
        listening = sorted(line.split()[3] for line in in_ns(node, "ss", "-Hltn").stdout.splitlines())
        assert listening == ["172.30.21.%d:22" % (11 + index), "[fd00:30:21::%d]:22" % (11 + index)]
    ctl_addrs = global_addrs(ctl.netns, "eth0")
    assert ctl_addrs == ["172.30.21.2/24", "fd00:30:21::2/64"]
    rc, results, raw = first_play[:3]
    assert rc == 0, raw[-3000:]
    for node in lab.nodes:
        hostname, etc_hostname, connection, home, *files = results["where"][node]["stdout"].splitlines()
        # the session runs in the node's own view: its UTS name and its /etc overlay
        assert hostname == etc_hostname == node
        # and in its own home directory (no ~/.bashrc of the machine's for root's login shell to run)
        assert home == "/root" and ".bashrc" not in files and ".podnet-home" in files
        assert (Path(lab.node_root(node)) / "sshd" / "home" / ".podnet-home").exists()
        assert connection.split()[0] == "172.30.21.2" and connection.split()[3] == "22"
    assert not (Path.home() / ".podnet-home").exists()  # not the machine's
    # from the machine's own namespace too: the ProxyCommand makes the TCP connection inside <lab>-ctl
    proc = run([str(BIN / "ansible"), "-i", str(lab.hosts_yml), lab.nodes[0], "-m", "command",
                "-a", "sh -c 'echo $SSH_CONNECTION'"])
    assert "172.30.21.2 " in proc.stdout and " 172.30.21.11 22" in proc.stdout, proc.stdout
    # the machine's own namespace is untouched by the lab, the sshds and the controller
    assert rootns.diff(lab.rootns_before, rootns.snapshot()) == ""


# --------------------------------------------------------------------------- node 1: move and back


def test_move_over_ssh_survives_and_a_second_run_changes_nothing(lab: Lab, pristine, ctl: Controller):
    node = lab.nodes[0]
    rc, check = ctl.uplink(node, "--check", "--diff")
    assert rc == 0 and check["changed"] and check["commands"][0].startswith("link add name br0")
    assert "+br0: addr 172.30.21.11/24" not in check["diff"]["before"]
    assert "br0: addr 172.30.21.11/24" in check["diff"]["after"]
    assert not same_state(pristine[node], kernel_state(node)), "check mode changed the node"

    rc, results, raw = ctl.play(node, [
        {"name": "uplink", "podnet.cluster.uplink_bridge": {"bridge": "br0", "uplink": "eth0"}},
        # the same SSH session (ControlPersist is reset only by the action) works after the move
        {"name": "after", "ansible.builtin.command": "ip -json addr show dev br0"},
        # a second run of the move, in the same play: named by its address, which is on the bridge now
        {"name": "again", "diff": True,
         "podnet.cluster.uplink_bridge": {"bridge": "br0", "uplink_address": "172.30.21.11"}},
    ])
    assert rc == 0, raw[-4000:]
    moved = results["uplink"][node]
    assert moved["changed"] and moved["confirmed"] and not moved["rolled_back"]
    assert [(c["address"], c["ok"]) for c in moved["checked"]] == [(GATEWAY, True), (GATEWAY6, True)]
    assert "172.30.21.11" in results["after"][node]["stdout"]
    assert link(node, "eth0").get("master") == "br0"
    bridge = link(node, "br0")
    assert bridge["address"] == link(node, "eth0")["address"] and bridge["mtu"] == link(node, "eth0")["mtu"]
    assert global_addrs(node, "br0") == ["172.30.21.11/24", "fd00:30:21::11/64"]
    assert global_addrs(node, "eth0") == []
    default4 = json.loads(in_ns(node, "ip", "-json", "-4", "route", "show", "default").stdout)
    assert [(r["gateway"], r["dev"]) for r in default4] == [(GATEWAY, "br0")]

    # named by its address, which is on the bridge now: the saved snapshot says the uplink is eth0
    again = results["again"][node]
    assert not again["changed"] and again["commands"] == [] and again["uplink"] == "eth0", again
    assert "confirmed" not in again  # nothing to do: no detached run


def test_reverse_restores_the_original_state_exactly(lab: Lab, pristine, ctl: Controller):
    node = lab.nodes[0]
    if link(node, "eth0").get("master") != "br0":  # this test alone: move first
        assert ctl.uplink(node)[0] == 0
    # the reverse, and a second run of it, in one play
    rc, results, raw = ctl.play(node, [
        {"name": "back", "diff": True,
         "podnet.cluster.uplink_bridge": {"bridge": "br0", "uplink": "eth0", "state": "absent"}},
        {"name": "again", "podnet.cluster.uplink_bridge": {"bridge": "br0", "uplink": "eth0", "state": "absent"}},
    ])
    assert rc == 0, raw[-4000:]
    back = results["back"][node]
    assert back["changed"] and back["confirmed"]
    assert back["commands"][0] == "link set dev eth0 nomaster" and back["commands"][-1] == "link del dev br0"
    assert not same_state(pristine[node], kernel_state(node)), same_state(pristine[node], kernel_state(node))
    assert not results["again"][node]["changed"], results["again"][node]


def test_a_job_file_written_as_older_ansible_core_writes_it_is_confirmed(lab: Lab, pristine, ctl: Controller,
                                                                         tmp_path):
    """ansible-core before 2.19 writes the async job file with "started": 1, "finished": 0 (2.19: true/false).
    Ansible's own async_wrapper, changed only in that line, runs the detached move: it is confirmed both ways.
    Under an older ansible-core (make core-oldest) its own async_wrapper already writes that line: it runs as is."""
    import ansible.modules.async_wrapper as wrapper
    source = Path(wrapper.__file__).read_text()
    line = 'jwrite({"started": True, "finished": False, "ansible_job_id": jid})'
    older = 'jwrite({"started": 1, "finished": 0, "ansible_job_id": jid})'
    env = {}
    if older not in source:
        assert line in source
        library = tmp_path / "library"
        library.mkdir()
        (library / "async_wrapper.py").write_text(source.replace(line, older))
        env = {"ANSIBLE_LIBRARY": str(library)}
    node = lab.nodes[0]
    if link(node, "eth0").get("master") == "br0":
        assert ctl.uplink(node, state="absent")[0] == 0
    # the move, the link as the node shows it then, and the move back, in one play
    uplink = {"bridge": "br0", "uplink": "eth0", "rollback_timeout": 20}
    rc, results, raw = ctl.play(node, [
        {"name": "moved", "podnet.cluster.uplink_bridge": uplink},
        {"name": "eth0", "ansible.builtin.command": "ip -json link show dev eth0"},
        {"name": "back", "podnet.cluster.uplink_bridge": dict(uplink, state="absent")},
    ], env=env)
    moved, back = results["moved"][node], results.get("back", {}).get(node)
    assert moved["confirmed"] and not moved["rolled_back"], moved
    assert json.loads(results["eth0"][node]["stdout"])[0].get("master") == "br0", results["eth0"][node]
    assert rc == 0 and back["confirmed"] and not back["rolled_back"], back
    assert not same_state(pristine[node], kernel_state(node)), same_state(pristine[node], kernel_state(node))


def test_bad_input_fails_before_any_change(lab: Lab, first_play):
    """The bad input tasks ran on node 1 in the module's first play (beside a command on every node)."""
    node = lab.nodes[0]
    rc, results, raw, before, after = first_play
    host = "host %s: " % node   # the action names the host in every failure
    assert results["no such uplink"][node]["msg"] == host + "br0/eth9: uplink eth9 does not exist on this host"
    assert results["timeouts"][node]["msg"].startswith(
        host + "rollback_timeout (8 s) must be greater than check_timeout (10 s)")
    assert results["bad check address"][node]["msg"] == host + "br0/eth0: check address 'gateway' is not an IP " \
        "address"
    assert results["bridge is a veth"][node]["msg"] == host + "eth0/lo: uplink lo is a loopback; it cannot be " \
        "enslaved into bridge eth0"
    assert all(results[name][node].get("failed") for name in BAD_INPUT), raw[-3000:]
    assert not same_state(before, after), same_state(before, after)


# --------------------------------------------------------------------------- node 2: a TCP stream


def test_tcp_connection_survives_the_move_without_loss(lab: Lab, pristine, ctl: Controller, tmp_path):
    node, router = lab.nodes[1], "%s-router" % lab.name
    stream = TcpStream(node, router, "172.30.21.12", 7000, tmp_path, lab.pids).start()
    try:
        stream.wait_for(200)
        # the check this time: ARP and NDP answers of the gateways through the bridge
        rc, moved = ctl.uplink(node, check_method="neigh", uplink_address="172.30.21.12/24")
        assert rc == 0 and moved["changed"] and moved["confirmed"] and moved["uplink"] == "eth0", moved
        assert link(node, "eth0").get("master") == "br0"
        router_mac = link("%s-router" % lab.name, "eth0")["address"]
        assert [(c["address"], c["method"], c["ok"]) for c in moved["checked"]] == [
            (GATEWAY, "neigh", True), (GATEWAY6, "neigh", True)]
        assert all(" is at %s on br0 (" % router_mac in c["detail"] for c in moved["checked"])
        after_move = stream.received()
        stream.wait_for(after_move + 500)  # the same connection carries data after the move
    finally:
        outcome = stream.finish()
    assert outcome["error"] is None, outcome
    assert outcome["in_order"] and outcome["received"] == outcome["sent"] > after_move + 500, outcome
    rc, back = ctl.uplink(node, state="absent", check_method="neigh")
    assert rc == 0 and back["changed"] and all(c["ok"] for c in back["checked"]), back
    assert not same_state(pristine[node], kernel_state(node)), same_state(pristine[node], kernel_state(node))


# --------------------------------------------------------------------------- node 3: rollbacks


def test_check_address_that_does_not_answer_is_rolled_back(lab: Lab, pristine, ctl: Controller):
    node = lab.nodes[2]
    before = kernel_state(node)
    rc, failed = ctl.uplink(node, check_address=["172.30.21.99"], check_timeout=2, rollback_timeout=20)
    assert rc != 0 and failed.get("failed")
    assert failed["rolled_back"] and failed["rollback_complete"] and not failed["confirmed"]
    assert "move of eth0 into br0 rolled back: reachability check failed: 172.30.21.99 did not answer" \
        in failed["msg"]
    assert failed["rollback_commands"][0] == "link set dev eth0 nomaster"
    assert before == pristine[node]
    assert not same_state(before, kernel_state(node)), same_state(before, kernel_state(node))
    # reachable again, over a new SSH connection
    rc, results, raw = ctl.play(node, [{"name": "ping", "ansible.builtin.ping": {}}])
    assert rc == 0 and results["ping"][node]["ping"] == "pong", raw[-3000:]


def test_bridge_that_cuts_the_gateway_is_rolled_back(lab: Lab, ctl: Controller):
    """An existing bridge with STP on keeps a new port in the listening state for 2 x 15 s: after the
    move the gateways do not answer, the move is rolled back, and the bridge gets its own state back."""
    node = lab.nodes[2]
    assert in_ns(node, "ip", "link", "add", "br0", "mtu", "1400", "type", "bridge", "stp_state", "1").returncode == 0
    try:
        before = kernel_state(node)
        rc, failed = ctl.uplink(node, check_timeout=3, rollback_timeout=20)
        assert rc != 0 and failed["rolled_back"] and failed["rollback_complete"], failed
        assert failed["commands"][:3] == ["link set dev br0 address %s mtu 1500" % link(node, "eth0")["address"],
                                          "link set dev eth0 master br0", "link set dev br0 up"]
        assert "%s did not answer ping" % GATEWAY in failed["msg"]
        assert "%s did not answer ping" % GATEWAY6 in failed["msg"]
        assert not same_state(before, kernel_state(node)), same_state(before, kernel_state(node))
        assert link(node, "br0")["linkinfo"]["info_data"]["stp_state"] == 1
    finally:
        in_ns(node, "ip", "link", "del", "br0")


def test_no_confirmation_from_a_new_connection_is_rolled_back(lab: Lab, pristine, ctl: Controller):
    """The node drops new SSH connections that arrive through the bridge: the module's own check
    passes, but the controller cannot reconnect to confirm, so the module rolls back by itself."""
    node = lab.nodes[2]
    for command in (["add", "table", "inet", "podnet_test"],
                    ["add", "chain", "inet", "podnet_test", "input", "{ type filter hook input priority 0; }"],
                    ["add", "rule", "inet", "podnet_test", "input", "iifname", "br0", "tcp", "dport", "22",
                     "ct", "state", "new", "drop"]):
        proc = in_ns(node, "nft", *command)
        assert proc.returncode == 0, proc.stderr
    try:
        before = kernel_state(node)
        rc, failed = ctl.uplink(node, "-e", "ansible_ssh_timeout=3", check_timeout=3, rollback_timeout=10)
        assert rc != 0 and failed["rolled_back"] and failed["rollback_complete"], failed
        assert all(c["ok"] for c in failed["checked"])
        assert failed["confirmed"] is False
        assert "no confirmation from the controller over a new connection" in failed["msg"]
        assert not same_state(before, kernel_state(node)), same_state(before, kernel_state(node))
    finally:
        in_ns(node, "nft", "delete", "table", "inet", "podnet_test")
    assert not same_state(pristine[node], kernel_state(node)), same_state(pristine[node], kernel_state(node))


def test_engine_runs_without_ansible(lab: Lab, pristine, tmp_path):
    """What a boot-time restore does: the engine file alone, run by the system Python (no Ansible)."""
    node = lab.nodes[2]
    engine = str(REPO / "plugins" / "module_utils" / "uplink.py")
    snapshot = str(tmp_path / "uplink-br0.json")
    common = ["--bridge", "br0", "--uplink", "eth0", "--snapshot", snapshot]
    assert in_ns(node, "/usr/bin/python3", "-c", "import ansible").returncode != 0  # really without Ansible
    moved = in_ns(node, "/usr/bin/python3", engine, "move", *common)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    report = json.loads(moved.stdout)
    assert report["changed"] and not report["rolled_back"] and [c["ok"] for c in report["checked"]] == [True, True]
    assert link(node, "eth0").get("master") == "br0" and os.path.exists(snapshot)
    again = json.loads(in_ns(node, "/usr/bin/python3", engine, "move", *common).stdout)
    assert again["changed"] is False and again["commands"] == []
    back = in_ns(node, "/usr/bin/python3", engine, "restore", *common)
    assert back.returncode == 0, back.stdout + back.stderr
    assert not os.path.exists(snapshot)
    assert not same_state(pristine[node], kernel_state(node)), same_state(pristine[node], kernel_state(node))
    refused = in_ns(node, "/usr/bin/python3", engine, "move", "--bridge", "br0", "--uplink", "lo",
                    "--snapshot", snapshot)
    assert refused.returncode == 2 and "uplink lo is a loopback" in json.loads(refused.stdout)["error"]


# --------------------------------------------------------------------------- removal


def test_lab_absent_stops_the_sshds_and_the_controller(lab: Lab):
    pids = []
    for node in lab.nodes:
        with open("%s/%s/sshd/sshd.pid" % (lab.root, node)) as fh:
            pids.append(int(fh.read()))
    proc = lab.playbook("absent", True, "-v")
    assert "stop sshd of %s" % lab.nodes[0] in proc.stdout
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    assert not os.path.exists("/run/netns/%s-ctl" % lab.name)
    assert not os.path.exists(lab.root)
    assert rootns.diff(lab.rootns_before, rootns.snapshot()) == ""
