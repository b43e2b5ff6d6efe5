# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""While a node is planned, a read that several parts make runs once (engine.runner.reads_once and read)."""

from __future__ import annotations

import json

from ansible_collections.podnet.cluster.plugins.module_utils.engine.node import foreign_in_cluster
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import read, reads_once
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import get_link, run_ip_json


class CountingRunner(object):
    """Answers every command with its own argv (as JSON) and counts the commands it ran."""

    check_mode = True

    def __init__(self):
        self.ran = []

    def which(self, name):
        return "/sbin/" + name

    def run(self, argv, data=None):
        self.ran.append(tuple(argv))
        if argv[-2:] == ["addr", "show"] or "route" in argv:
            return 0, "[]", ""
        return 0, json.dumps([{"ifname": argv[-1], "argv": list(argv), "call": len(self.ran)}]), ""


def test_outside_the_context_every_read_runs():
    runner = CountingRunner()
    read(runner, ["/sbin/ip", "-json", "addr", "show"])
    read(runner, ["/sbin/ip", "-json", "addr", "show"])
    assert len(runner.ran) == 2


def test_inside_the_context_the_same_read_runs_once_and_others_run():
    runner = CountingRunner()
    with reads_once(runner):
        first = get_link(runner, "cbr0")
        again = get_link(runner, "cbr0")
        other = get_link(runner, "eth0")
        run_ip_json(runner, ["addr", "show"], numeric=False)
        run_ip_json(runner, ["addr", "show"], numeric=False)
    assert first == again and first["call"] == 1 and other["call"] == 2
    assert runner.ran == [("/sbin/ip", "-d", "-json", "link", "show", "dev", "cbr0"),
                          ("/sbin/ip", "-d", "-json", "link", "show", "dev", "eth0"),
                          ("/sbin/ip", "-json", "addr", "show")]


def test_an_answer_is_decoded_again_for_each_caller():
    """A caller that changes what it got does not change what the next caller gets."""
    runner = CountingRunner()
    with reads_once(runner):
        get_link(runner, "cbr0")["ifname"] = "changed"
        assert get_link(runner, "cbr0")["ifname"] == "cbr0"
    assert len(runner.ran) == 1


def test_nested_contexts_share_their_answers_and_end_with_the_outer_one():
    runner = CountingRunner()
    doc = {"owned_cidrs": ["10.91.0.0/17"], "bridge": {"name": "cbr0"}, "routes": {"protocol": 158}}
    with reads_once(runner):
        foreign_in_cluster(runner, doc)
        with reads_once(runner):
            foreign_in_cluster(runner, doc)
        foreign_in_cluster(runner, doc)
    once = len(runner.ran)
    assert once == len(set(runner.ran)) and once >= 2
    foreign_in_cluster(runner, doc)  # the context is over: the node is read again
    assert len(runner.ran) == 2 * once


def test_a_round_of_reads_side_by_side_shares_the_answers_of_the_planning_pass():
    """engine.runner.run_reads (the overlay's round of reads): a command read before is not run again, what the
    round runs answers the next read, a command listed twice runs once; outside the context every round runs."""
    from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import run_reads

    addr, link, neigh = (["/sbin/ip", "-json", "addr", "show"], ["/sbin/ip", "-d", "-json", "link", "show"],
                         ["/sbin/ip", "-json", "neigh", "show"])
    runner = CountingRunner()
    with reads_once(runner):
        first = read(runner, addr)
        got = run_reads(runner, [addr, link, neigh, link])
        again = read(runner, neigh)
    assert got[0] == first and got[1] == got[3] and again == got[2]
    assert runner.ran == [tuple(addr), tuple(link), tuple(neigh)]
    outside = CountingRunner()
    run_reads(outside, [addr, link])
    run_reads(outside, [addr, link])
    assert outside.ran == [tuple(addr), tuple(link)] * 2
