# SPDX-License-Identifier: Apache-2.0
"""The iptables chains engine (the chains part of podnet.cluster.node_state): masquerade and forward shapes, IPv4
and IPv6, foreign rules and chains kept, run inside a scratch namespace and read back with iptables-save."""

from __future__ import annotations

from modtest_lib import failed, ok


def C(args, check=False):
    return {"engine": "chains", "args": args, "check": check}


MARK = '-m comment --comment "podnet.cluster"'


def masq(pod_cidr, no_masq, family=4):
    rules = [{"destination": cidr, "comment": "podnet: no masquerade", "jump": "RETURN"} for cidr in no_masq]
    rules.append({"comment": "podnet: masquerade", "jump": "MASQUERADE"})
    return {"ip_version": family, "table": "nat", "chains": [{
        "name": "PODNET-MASQ", "rules": rules,
        "jumps": [{"from": "POSTROUTING", "source": pod_cidr, "dst_type": "!LOCAL"}]}]}


def forward(cluster, family=4):
    return {"ip_version": family, "table": "filter", "chains": [{
        "name": "PODNET-FORWARD",
        "rules": [{"source": cluster, "jump": "ACCEPT"}, {"destination": cluster, "jump": "ACCEPT"}],
        "jumps": [{"from": "FORWARD", "position": "insert"}]}]}


def chain(ns, table, name, family=4):
    return [line for line in ns.rules(table, family) if line.split()[1] == name]


def chains(ns, table, family=4):
    return {line[1:].split()[0] for line in ns.save(table, family).splitlines() if line.startswith(":")}


MASQ_V4 = [
    '-A PODNET-MASQ -d 10.244.0.0/16 -m comment --comment "podnet: no masquerade" -j RETURN',
    '-A PODNET-MASQ -d 192.168.0.0/16 -m comment --comment "podnet: no masquerade" -j RETURN',
    '-A PODNET-MASQ -d 203.0.113.7/32 -m comment --comment "podnet: no masquerade" -j RETURN',
    '-A PODNET-MASQ -m comment --comment "podnet: masquerade" -j MASQUERADE',
]
FWD_V4 = ["-A PODNET-FORWARD -s 10.244.0.0/16 -j ACCEPT", "-A PODNET-FORWARD -d 10.244.0.0/16 -j ACCEPT"]


def test_ipv4_masquerade_and_forward(netns):
    ns = netns
    # foreign state that must survive everything: a rule in POSTROUTING, a chain, FORWARD policy and rule
    ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE")
    ns.run("iptables", "-t", "nat", "-N", "FOREIGN")
    ns.run("iptables", "-t", "nat", "-A", "FOREIGN", "-d", "198.51.100.1", "-j", "RETURN")
    ns.run("iptables", "-P", "FORWARD", "DROP")
    ns.run("iptables", "-A", "FORWARD", "-i", "eth9", "-j", "ACCEPT")

    nat_args = masq("10.244.1.0/24", ["10.244.0.0/16", "192.168.0.0/16", "203.0.113.7"])
    fwd_args = forward("10.244.0.0/16")
    chk_nat, chk_fwd, nat1, fwd1, nat2, fwd2 = ns.engine([
        C(nat_args, check=True), C(fwd_args, check=True),
        C(nat_args), C(fwd_args), C(nat_args), C(fwd_args),
    ])
    for res in (chk_nat, chk_fwd, nat1, fwd1, nat2, fwd2):
        ok(res)
    assert chk_nat["changed"] and chk_nat["chains_written"] == ["PODNET-MASQ"]
    assert chk_nat["restore"] == nat1["restore"] and chk_fwd["restore"] == fwd1["restore"]
    assert nat1["changed"] and fwd1["changed"], "check mode must not have written anything"
    assert fwd1["jumps_added"] == ["-I FORWARD 1 %s -j PODNET-FORWARD" % MARK]
    assert "+-A PODNET-MASQ -d 203.0.113.7/32" in "\n".join("+" + l for l in nat1["diff"]["after"].splitlines())
    assert nat1["diff"]["before"] == ""
    assert nat2["changed"] is False and fwd2["changed"] is False and nat2["restore"] == ""

    assert chain(ns, "nat", "PODNET-MASQ") == MASQ_V4
    assert chain(ns, "nat", "POSTROUTING") == [
        "-A POSTROUTING -o eth9 -j MASQUERADE",
        "-A POSTROUTING -s 10.244.1.0/24 -m addrtype ! --dst-type LOCAL %s -j PODNET-MASQ" % MARK,
    ]
    assert chain(ns, "nat", "FOREIGN") == ["-A FOREIGN -d 198.51.100.1/32 -j RETURN"]
    assert chain(ns, "filter", "FORWARD") == ["-A FORWARD %s -j PODNET-FORWARD" % MARK,
                                              "-A FORWARD -i eth9 -j ACCEPT"]
    assert chain(ns, "filter", "PODNET-FORWARD") == FWD_V4
    assert ":FORWARD DROP" in ns.save("filter")

    # a manual edit of our chain, a duplicated jump, and a new pod CIDR for this node
    ns.run("iptables", "-t", "nat", "-D", "PODNET-MASQ", "1")
    ns.run("iptables", "-t", "nat", "-I", "PODNET-MASQ", "-d", "8.8.8.8", "-j", "RETURN")
    ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.1.0/24", "-m", "addrtype", "!", "--dst-type",
           "LOCAL", "-m", "comment", "--comment", "podnet.cluster", "-j", "PODNET-MASQ")
    ns.run("iptables", "-A", "FORWARD", "-m", "comment", "--comment", "podnet.cluster", "-j", "PODNET-FORWARD")
    new_nat = masq("10.244.7.0/24", ["10.244.0.0/16", "192.168.0.0/16", "203.0.113.7"])
    rep_nat, rep_fwd = ns.engine([C(new_nat), C(fwd_args)])
    ok(rep_nat), ok(rep_fwd)
    assert rep_nat["chains_written"] == ["PODNET-MASQ"]
    assert len(rep_nat["jumps_removed"]) == 2 and len(rep_nat["jumps_added"]) == 1
    # the duplicated jump: every copy is deleted by its spec and one is inserted again at the top
    assert rep_fwd["chains_written"] == [] and rep_fwd["jumps_removed"] == [
        "-D FORWARD %s -j PODNET-FORWARD" % MARK] * 2
    assert rep_fwd["jumps_added"] == ["-I FORWARD 1 %s -j PODNET-FORWARD" % MARK]
    assert chain(ns, "nat", "PODNET-MASQ") == MASQ_V4
    assert chain(ns, "nat", "POSTROUTING") == [
        "-A POSTROUTING -o eth9 -j MASQUERADE",
        "-A POSTROUTING -s 10.244.7.0/24 -m addrtype ! --dst-type LOCAL %s -j PODNET-MASQ" % MARK,
    ]
    assert chain(ns, "filter", "FORWARD") == ["-A FORWARD %s -j PODNET-FORWARD" % MARK,
                                              "-A FORWARD -i eth9 -j ACCEPT"]

    # absent: our jumps and chains go, everything else stays; a second absent changes nothing
    absent_nat = {"table": "nat", "chains": [{"name": "PODNET-MASQ"}], "state": "absent"}
    absent_fwd = {"table": "filter", "chains": [{"name": "PODNET-FORWARD"}], "state": "absent"}
    chk, a_nat, a_fwd, again = ns.engine([C(absent_nat, check=True), C(absent_nat), C(absent_fwd),
                                          C(absent_nat)])
    assert ok(chk)["changed"] and ok(a_nat)["changed"] and ok(a_fwd)["changed"]
    assert a_nat["chains_deleted"] == ["PODNET-MASQ"] and ok(again)["changed"] is False
    assert "PODNET-MASQ" not in chains(ns, "nat") and "PODNET-FORWARD" not in chains(ns, "filter")
    assert ns.rules("nat") == ["-A POSTROUTING -o eth9 -j MASQUERADE", "-A FOREIGN -d 198.51.100.1/32 -j RETURN"]
    assert ns.rules("filter") == ["-A FORWARD -i eth9 -j ACCEPT"]


def test_ipv6_shapes_errors_and_foreign_reference(netns):
    ns = netns
    # ::ffff:198.51.100.7 is printed by ip6tables-save in a form Python does not produce: the fallback
    # normalisation of both sides must still make the second run a no-op
    nat_args = masq("fd00:10:244:1::/64", ["fd00:10:244::/48", "FD00:77:0::/64", "2001:db8::7", "::ffff:198.51.100.7"],
                    family=6)
    fwd_args = forward("fd00:10:244::/48", family=6)
    bad_family = masq("10.244.1.0/24", ["10.244.0.0/16"], family=6)
    bad_type = forward("fd00:10:244::/48", family=6)
    bad_type["chains"][0]["rules"][0]["dst_type"] = "LOCALE"
    nat1, fwd1, nat2, fwd2, err_family, err_type = ns.engine([
        C(nat_args), C(fwd_args), C(nat_args), C(fwd_args), C(bad_family), C(bad_type)])
    assert ok(nat1)["changed"] and ok(fwd1)["changed"]
    assert ok(nat2)["changed"] is False and ok(fwd2)["changed"] is False
    msg = failed(err_family)
    assert "PODNET-MASQ" in msg and "IPv4" in msg and "10.244.0.0/16" in msg
    msg = failed(err_type)
    assert "PODNET-FORWARD" in msg and "LOCALE" in msg
    assert chain(ns, "nat", "PODNET-MASQ", 6) == [
        '-A PODNET-MASQ -d fd00:10:244::/48 -m comment --comment "podnet: no masquerade" -j RETURN',
        '-A PODNET-MASQ -d fd00:77::/64 -m comment --comment "podnet: no masquerade" -j RETURN',
        '-A PODNET-MASQ -d 2001:db8::7/128 -m comment --comment "podnet: no masquerade" -j RETURN',
        '-A PODNET-MASQ -d ::ffff:198.51.100.7/128 -m comment --comment "podnet: no masquerade" -j RETURN',
        '-A PODNET-MASQ -m comment --comment "podnet: masquerade" -j MASQUERADE',
    ]
    assert chain(ns, "nat", "POSTROUTING", 6) == [
        "-A POSTROUTING -s fd00:10:244:1::/64 -m addrtype ! --dst-type LOCAL %s -j PODNET-MASQ" % MARK]
    assert chain(ns, "filter", "PODNET-FORWARD", 6) == [
        "-A PODNET-FORWARD -s fd00:10:244::/48 -j ACCEPT", "-A PODNET-FORWARD -d fd00:10:244::/48 -j ACCEPT"]
    assert chain(ns, "filter", "FORWARD", 6) == ["-A FORWARD %s -j PODNET-FORWARD" % MARK]
    # the failed runs changed nothing, and IPv4 was never touched
    assert ns.rules("nat", 4) == [] and ns.rules("filter", 4) == []

    # an unmarked rule of someone else still jumps to our chain: absent refuses, before any change
    ns.run("ip6tables", "-A", "INPUT", "-j", "PODNET-FORWARD")
    before = ns.rules("filter", 6)
    res = ns.engine([C({"ip_version": 6, "table": "filter", "chains": [{"name": "PODNET-FORWARD"}], "state": "absent"})])[0]
    msg = failed(res)
    assert "PODNET-FORWARD" in msg and "-A INPUT -j PODNET-FORWARD" in msg
    assert ns.rules("filter", 6) == before
