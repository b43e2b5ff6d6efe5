# SPDX-License-Identifier: Apache-2.0
"""The bridge engine (the bridge part of podnet.cluster.node_state), run inside scratch namespaces and read back
from the kernel."""

from __future__ import annotations

import ipaddress

from modtest_lib import failed, ok


def B(args, check=False):
    return {"engine": "bridge", "args": args, "check": check}


OWNED = ["10.244.0.0/16", "fd00:10:244::/48"]
ADDRS = ["10.244.1.1/24", "fd00:10:244:1::1/64"]


def bridge_state(ns, name="cbr0"):
    """(kind, mtu, up, sorted addresses without IPv6 link-local) read back from the kernel."""
    links = ns.ip_json("-d", "link", "show", "dev", name)
    link = links[0]
    addrs = ns.ip_json("addr", "show", "dev", name)[0]["addr_info"]
    found = sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in addrs
                   if not ipaddress.ip_address(a["local"]).is_link_local)
    return (link.get("linkinfo", {}).get("info_kind"), link["mtu"], "UP" in link["flags"], found)


def link_exists(ns, name):
    return any(link["ifname"] == name for link in ns.ip_json("link", "show"))


def test_create_check_idempotent_and_mtu_from_address(node_pair):
    node, _peer = node_pair
    args = dict(name="cbr0", addresses=ADDRS, owned_cidrs=OWNED, mtu_from_address="192.168.0.1")
    check = ok(node.engine([B(args, check=True)])[0])
    assert check["changed"] and check["created"]
    assert check["commands"][:2] == ["link add name cbr0 type bridge", "link set dev cbr0 mtu 1450"]
    assert "+address 10.244.1.1/24" in _unified(check["diff"]) and check["diff"]["before"] == ""
    assert not link_exists(node, "cbr0"), "check mode created the bridge"

    first, second = node.engine([B(args), B(args)])
    ok(first), ok(second)
    assert first["changed"] and first["created"] and first["mtu"] == 1450 and first["mtu_source"] == "eth0"
    assert sorted(first["added"]) == sorted(ADDRS)
    assert second["changed"] is False and second["commands"] == [] and second["added"] == []
    assert bridge_state(node) == ("bridge", 1450, True, sorted(ADDRS))
    # the MTU is the bridge's own: a port with a bigger one joining and leaving does not change it
    node.ip("link", "add", "bigport", "mtu", "1500", "type", "veth", "peer", "name", "bigpeer")
    node.ip("link", "set", "bigport", "master", "cbr0")
    assert bridge_state(node)[1] == 1450
    node.ip("link", "del", "bigport")
    assert bridge_state(node)[1] == 1450
    v6 = [a for a in node.ip_json("addr", "show", "dev", "cbr0")[0]["addr_info"] if a["local"] == "fd00:10:244:1::1"]
    assert v6 and v6[0].get("nodad") is True
    v4 = [a for a in node.ip_json("addr", "show", "dev", "cbr0")[0]["addr_info"] if a["local"] == "10.244.1.1"]
    assert v4[0].get("broadcast") == "10.244.1.255"
    # made without duplicate address detection: its link-local address is usable at once (the kernel sends no
    # neighbour solicitation for a forwarded packet on a bridge whose link-local address is still tentative)
    lladdr = [a for a in node.ip_json("addr", "show", "dev", "cbr0")[0]["addr_info"] if a["local"].startswith("fe80:")]
    assert lladdr and not lladdr[0].get("tentative"), lladdr
    assert node.run("cat", "/proc/sys/net/ipv6/conf/cbr0/accept_dad").strip() == "0"


def test_owned_addresses_reconciled_foreign_kept_and_absent(netns):
    ns = netns
    ns.ip("link", "add", "cbr0", "type", "bridge")
    ns.ip("addr", "add", "10.244.9.1/24", "dev", "cbr0")        # owned, stale (old pod CIDR)
    ns.ip("addr", "add", "10.244.1.1/16", "dev", "cbr0")        # owned, right IP but wrong prefix
    ns.ip("addr", "add", "172.16.5.1/24", "dev", "cbr0")        # foreign: never touched
    args = dict(name="cbr0", addresses=ADDRS, owned_cidrs=OWNED, mtu=1400)
    res, again, absent_kept = ns.engine([
        B(args),
        B(args),
        B(dict(name="cbr0", owned_cidrs=OWNED, state="absent")),
    ])
    ok(res), ok(again), ok(absent_kept)
    assert res["changed"] and sorted(res["removed"]) == ["10.244.1.1/16", "10.244.9.1/24"]
    assert sorted(res["added"]) == sorted(ADDRS)
    assert "-address 10.244.9.1/24" in _unified(res["diff"]) and "+link cbr0 type bridge mtu 1400 up" in _unified(res["diff"])
    assert again["changed"] is False
    # absent: the foreign address keeps the bridge, only the owned addresses go
    assert absent_kept["changed"] and absent_kept["deleted"] is False
    assert sorted(absent_kept["removed"]) == sorted(ADDRS)
    assert any("172.16.5.1/24" in w for w in absent_kept.get("warnings", []))
    assert bridge_state(ns) == ("bridge", 1400, True, ["172.16.5.1/24"])

    ns.ip("addr", "del", "172.16.5.1/24", "dev", "cbr0")
    ns.ip("addr", "add", "10.244.1.1/24", "dev", "cbr0")
    gone, nothing = ns.engine([B(dict(name="cbr0", owned_cidrs=OWNED, state="absent")),
                               B(dict(name="cbr0", owned_cidrs=OWNED, state="absent"))])
    assert ok(gone)["changed"] and gone["deleted"] is True
    assert ok(nothing)["changed"] is False
    assert not link_exists(ns, "cbr0")


def test_errors_non_bridge_link_and_unknown_mtu_address(node_pair):
    node, _peer = node_pair
    node.ip("link", "add", "cbr0", "type", "veth", "peer", "name", "cbr0p")
    not_bridge, no_holder, bad_addr = node.engine([
        B(dict(name="cbr0", addresses=ADDRS, owned_cidrs=OWNED)),
        B(dict(name="cbr1", addresses=ADDRS, owned_cidrs=OWNED, mtu_from_address="192.168.0.77")),
        B(dict(name="cbr1", addresses=["10.244.1.0/24"], owned_cidrs=OWNED)),
    ])
    msg = failed(not_bridge)
    assert "cbr0" in msg and "veth" in msg and "not a bridge" in msg
    msg = failed(no_holder)
    assert "192.168.0.77" in msg and "no link" in msg and "cbr1" in msg
    msg = failed(bad_addr)
    assert "10.244.1.0/24" in msg and "network" in msg
    # nothing was written: the veth is untouched, no cbr1
    link = node.ip_json("-d", "link", "show", "dev", "cbr0")[0]
    assert link["linkinfo"]["info_kind"] == "veth"
    assert node.ip_json("addr", "show", "dev", "cbr0")[0]["addr_info"] == [] or all(
        ipaddress.ip_address(a["local"]).is_link_local for a in node.ip_json("addr", "show", "dev", "cbr0")[0]["addr_info"])
    assert not link_exists(node, "cbr1")


def _unified(diff):
    """The diff dict as +/- lines (what --diff shows)."""
    import difflib
    return "\n".join(difflib.unified_diff(diff["before"].splitlines(), diff["after"].splitlines(), lineterm=""))
