# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Capture real ip -json output of a node before and after the move (fixture for the unit tests)."""
import json
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / '.collections'))
from ansible_collections.podnet.cluster.plugins.module_utils import uplink as U  # noqa: E402  (needs the path)
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import ProcessRunner  # noqa: E402


def sh(command):
    subprocess.run(command, shell=True, check=True)


def ipj(ns, *args):
    out = subprocess.run(["ip", "-n", ns, "-N", "-json"] + list(args), capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out) if out.strip() else []


def raw(ns):
    return {"links": ipj(ns, "-d", "link", "show"), "addresses": ipj(ns, "addr", "show"),
            "routes4": ipj(ns, "-d", "-4", "route", "show", "table", "all"),
            "routes6": ipj(ns, "-d", "-6", "route", "show", "table", "all")}


class NS(ProcessRunner):
    def __init__(self, ns):
        super().__init__()
        self.ns = ns

    def run(self, argv, data=None):
        return super().run(["nsenter", "--net=/run/netns/" + self.ns, "--"] + list(argv), data)


N, R = "uplc-n", "uplc-r"
for n in (N, R):
    subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL, check=False)
sh(f"ip netns add {N}; ip netns add {R}; ip -n {N} link add eth0 mtu 1450 type veth peer name eth0 netns {R}")
sh(f"ip -n {N} link set eth0 address 02:00:00:00:00:11; ip -n {R} link set eth0 address 02:00:00:00:00:01")
for n in (N, R):
    sh(f"ip -n {n} link set lo up; ip -n {n} link set eth0 up")
sh(f"ip -n {N} link add eth1 type veth peer name eth1 netns {R}; ip -n {N} addr add 198.51.100.1/24 dev eth1; "
   f"ip -n {N} link set eth1 up")
sh(f"ip -n {R} addr add 10.1.0.1/24 dev eth0; ip -n {R} -6 addr add fd00::1/64 dev eth0 nodad")
sh(f"ip -n {N} addr add 10.1.0.11/24 brd + dev eth0; ip -n {N} addr add 10.1.0.12/24 dev eth0 label eth0:x")
sh(f"ip -n {N} -6 addr add fd00::11/64 dev eth0 nodad; ip -n {N} -6 addr add fd00:2::11/64 dev eth0 noprefixroute nodad")
sh(f"ip -n {N} route add default via 10.1.0.1 proto static metric 100; "
   f"ip -n {N} route add 10.9.0.0/16 via 10.1.0.1 table 100 mtu 1400")
sh(f"ip -n {N} -6 route add default via fd00::1 dev eth0 metric 512; ip -n {N} -6 route add fd00:2::/64 dev eth0 metric 300")
sh(f"ip -n {N} route add 10.8.0.0/16 via 10.1.0.1 src 10.1.0.12; "
   f"ip -n {N} route add 10.7.0.0/16 via 198.51.100.254 src 10.1.0.11")
before = raw(N)
out = U.move(NS(N), "br0", "eth0")
assert out["error"] is None, out
after = raw(N)
for n in (N, R):
    subprocess.run(["ip", "netns", "del", n], check=False)
kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True, check=False).stdout.strip()
with open(str(pathlib.Path(__file__).with_name("uplink_ip_json.json")), "w") as handle:
    json.dump({"comment": "ip -N [-d] -json output of a node (uplink eth0) before and after podnet's move into br0, "
               "captured on Linux %s by capture_uplink.py (run as root); see test_uplink.py" % kernel,
               "before": before, "after": after}, handle, indent=1)
sys.stdout.write("ok\n")
