# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Tools of the vxlan fabric's tests: hand-built VXLAN packets, test pods on a node's bridge, UDP listeners,
the overlay entries a node holds, and a node's "reboot" by its unit's own lines."""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
import struct
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import VXLAN_DEVICES, vtep_mac

FAMILY_DEVICE = VXLAN_DEVICES


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def inner_datagram(src: str, dst: str, sport: int, dport: int, payload: bytes) -> Tuple[int, bytes]:
    """(ethertype, IP packet) of a UDP datagram ``src:sport -> dst:dport`` with correct checksums."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    length = 8 + len(payload)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, length)
        udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
        csum = _checksum(pseudo + udp) or 0xFFFF
        udp = struct.pack("!HHHH", sport, dport, length, csum) + payload
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0x1234, 0x4000, 64, 17, 0, s.packed, d.packed)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return 0x0800, header + udp
    pseudo = s.packed + d.packed + struct.pack("!I3xB", length, 17)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, csum) + payload
    header = struct.pack("!IHBB16s16s", 6 << 28, length, 17, 64, s.packed, d.packed)
    return 0x86DD, header + udp


def vxlan_packet(vni: int, dst_mac: str, src_mac: str, src: str, dst: str, dport: int, payload: bytes) -> bytes:
    """The UDP payload of a VXLAN packet (RFC 7348: flags 0x08, 24-bit VNI) carrying an Ethernet frame with a UDP
    datagram ``src -> dst:dport`` inside."""
    ethertype, ip_packet = inner_datagram(src, dst, 40000, dport, payload)
    frame = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) \
        + struct.pack("!H", ethertype) + ip_packet
    return struct.pack("!B3xI", 0x08, vni << 8) + frame


def send_udp(netns: str, dst: str, port: int, data: bytes) -> None:
    """One UDP datagram from inside ``netns`` to ``dst:port`` (the kernel picks the source address)."""
    family = "AF_INET6" if ":" in dst else "AF_INET"
    code = ("import socket,sys; s=socket.socket(socket.%s, socket.SOCK_DGRAM); "
            "s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))" % family)
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code, data.hex(), dst, str(port)],
                   check=True, timeout=30)


LISTENER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    data, peer = s.recvfrom(65535)
    print("got %s from %s" % (data.decode(), peer[0]), flush=True)
except socket.timeout:
    print("nothing", flush=True)
"""


class Listener:
    """A UDP listener inside a pod's namespace; ``result()`` is what it received (or "nothing")."""

    def __init__(self, netns: str, address: str, port: int, timeout: float = 20.0):
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", LISTENER, address,
                                      str(port), str(timeout)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def result(self) -> str:
        """What it received, waiting up to its timeout (for a datagram that must arrive)."""
        out, _err = self.proc.communicate(timeout=60)
        return out.strip()

    def after(self, seconds: float = 1.0) -> str:
        """What it received within ``seconds`` from now (for a datagram that must not arrive: call it once the
        sender is done), "nothing" otherwise; the listener is stopped."""
        try:
            out, _err = self.proc.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _err = self.proc.communicate()
            return "nothing" if not out.strip() else out.strip()
        return out.strip()


def make_pod(node: str, name: str, addresses: List[str], gateways: List[str], bridge: str = "cbr0") -> str:
    """A pod as a runtime makes one: a namespace ``name`` whose eth0 is a veth port of the node's bridge, with
    ``addresses`` and default routes via ``gateways``. Replaces one of the same name."""
    remove_pod(node, name)
    port = "vx%s" % (abs(hash(name)) % 10 ** 8)
    # both ends take the bridge's MTU, as CNI's bridge plugin gives them its "mtu" (a larger port would raise the
    # MTU of a bridge whose MTU was given when it was made)
    mtu = str(ip_json(node, "link", "show", "dev", bridge)[0]["mtu"])
    cmds = [["ip", "netns", "add", name],
            ["ip", "-n", node, "link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu,
             "netns", name],
            ["ip", "-n", node, "link", "set", port, "master", bridge, "up"],
            ["ip", "-n", name, "link", "set", "lo", "up"],
            ["ip", "-n", name, "link", "set", "eth0", "up"]]
    for addr in addresses:
        cmds.append(["ip", "-n", name, "addr", "add", addr, "dev", "eth0"] + (["nodad"] if ":" in addr else []))
    for gw in gateways:
        cmds.append(["ip", "-n", name, "-6" if ":" in gw else "-4", "route", "add", "default", "via", gw])
    for cmd in cmds:
        subprocess.run(cmd, check=True, capture_output=True)
    return name


def remove_pod(node: str, name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def pod_addresses(block_cidrs: List[str], offset: int = -10) -> Tuple[List[str], List[str]]:
    """(addresses with the block's prefix, gateways) of a test pod: the block's address ``offset`` from its end
    (far from host-local's range, which starts at the block's start) and the block's gateway (first + 1)."""
    addrs, gws = [], []
    for cidr in block_cidrs:
        net = ipaddress.ip_network(cidr)
        last = net[-1] if net.version == 6 else net[-2]
        addrs.append("%s/%d" % (last + offset + 1, net.prefixlen))
        gws.append(str(net[1]))
    return addrs, gws


def ip_json(netns: str, *args: str):
    out = subprocess.run(["ip", "-n", netns, "-j"] + list(args), check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def overlay_entries(netns: str, underlay: str = "eth0") -> Dict[str, set]:
    """Every permanent neighbour, FDB entry and protocol-158 route a node holds, on any device but its uplink
    ``underlay`` (the lab's own permanent neighbours between the hosts of a segment are there)."""
    neigh = {(n.get("dev"), n["dst"], n.get("lladdr")) for n in ip_json(netns, "neigh", "show", "nud", "permanent")
             if n.get("dev") != underlay}
    fdb_out = subprocess.run(["bridge", "-n", netns, "-j", "fdb", "show"], check=True, capture_output=True,
                             text=True).stdout
    fdb = {(f.get("ifname") or f.get("dev"), f["mac"], f.get("dst")) for f in json.loads(fdb_out or "[]")
           if f.get("state") == "permanent" and f.get("dst")}
    routes = set()
    for flag in ("-4", "-6"):
        routes |= {(r.get("dev"), r["dst"], r.get("gateway")) for r in ip_json(netns, flag, "route", "show",
                                                                               "proto", "158")}
    return {"neigh": neigh, "fdb": fdb, "routes": routes}


def vtep_of(block) -> str:
    """The VTEP address of a block, written out here independently of the collection's code: the network address
    of an IPv4 block, the last address of an IPv6 one (its first is the Subnet-Router anycast address)."""
    net = ipaddress.ip_network(str(block))
    return str(net.network_address if net.version == 4 else net.broadcast_address)


def wanted_entries(state_nodes: Dict[str, List[str]], node_ips: Dict[str, Dict[int, str]], me: str,
                   cluster_cidrs: List[str], vni: int) -> Dict[str, set]:
    """The entries ``me`` must hold, computed here from the plan independently of the collection's code paths:
    per peer and pod family, over the underlay of the same family when both have it."""
    neigh, fdb, routes = set(), set(), set()
    for peer, blocks in state_nodes.items():
        if peer == me:
            continue
        mac = vtep_mac(cluster_cidrs, vni, peer)
        for cidr in blocks:
            net = ipaddress.ip_network(cidr)
            fam = net.version
            common = sorted(set(node_ips[me]) & set(node_ips[peer]))
            under = fam if fam in common else common[0]
            dev = FAMILY_DEVICE[under]
            vtep = vtep_of(net)
            neigh.add((dev, vtep, mac))
            fdb.add((dev, mac, node_ips[peer][under]))
            routes.add((dev, str(net), vtep))
    return {"neigh": neigh, "fdb": fdb, "routes": routes}


def unit_exec_start(host) -> str:
    """The ExecStart line of the node's generated boot unit (read in the node's own /etc)."""
    text = host.file("/etc/systemd/system/podnet-cluster.service").content_string
    lines = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("ExecStart=")]
    assert len(lines) == 1, text
    return lines[0]


def wipe_kernel_state(netns: str, keep=("lo", "eth0")) -> None:
    """What a reboot leaves of a node's network: its uplink and loopback (with what the host's own network
    configuration gives them: addresses, default route, the lab's neighbours), nothing podnet.cluster made
    (links and with them their routes and neighbours, chains, forwarding)."""
    for link in ip_json(netns, "link", "show"):
        if link["ifname"] not in keep:
            subprocess.run(["ip", "-n", netns, "link", "delete", link["ifname"]], check=False, capture_output=True)
    subprocess.run(["ip", "-n", netns, "neigh", "flush", "all"], check=False, capture_output=True)
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat"):
            for flag in ("-F", "-X"):
                subprocess.run(["ip", "netns", "exec", netns, tool, "-t", table, flag], check=True)
    for key in ("net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"):
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", key], check=True)


def run_in_view(host, command: str):
    """Run a command line in the node's own view (namespace and /etc, /var/lib overlays), as systemd would."""
    return host.run(" ".join(shlex.quote(a) for a in shlex.split(command)))


def addr_family(addr: str) -> int:
    return 6 if ":" in addr else 4


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def node_ips_of(node_vars: Dict[str, dict]) -> Dict[str, Dict[int, str]]:
    """{node: {family: node IP}} of a lab inventory's podnet_node_ip values."""
    out: Dict[str, Dict[int, str]] = {}
    for name, hv in node_vars.items():
        ips = hv["podnet_node_ip"]
        ips = ips if isinstance(ips, list) else [ips]
        out[name] = {}
        for ip in ips:
            iface = ipaddress.ip_interface(ip)
            out[name].setdefault(iface.version, str(iface.ip))
    return out


def drop_counter(netns: str, family: int = 4) -> Optional[int]:
    """Packets the PODNET-VXLAN chain dropped (its last rule)."""
    tool = "ip6tables" if family == 6 else "iptables"
    out = subprocess.run(["ip", "netns", "exec", netns, tool, "-t", "filter", "-L", "PODNET-VXLAN", "-v", "-x", "-n"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "DROP":
            return int(fields[0])
    return None
