# SPDX-License-Identifier: Apache-2.0
"""The sysctl engine (the forwarding part of podnet.cluster.node_state), run inside a scratch namespace.

Live values are written only under /proc/sys/net of the scratch namespace; the files and
search paths are pytest tmp dirs. The machine's own value of net.ipv4.ip_forward is read
before and after to prove it was not touched.
"""

from __future__ import annotations

from pathlib import Path

from modtest_lib import failed, ok


def S(args, check=False):
    """A sysctl engine step; ``file`` is the engine's ``path``."""
    args = dict(args)
    args["path"] = args.pop("file")
    return {"engine": "sysctl", "args": args, "check": check}


def layout(tmp_path: Path):
    dirs = {name: tmp_path / name / "sysctl.d" for name in ("etc", "run", "usr")}
    for d in dirs.values():
        d.mkdir(parents=True)
    conf = tmp_path / "etc" / "sysctl.conf"
    base = {"file": str(dirs["etc"] / "90-podnet-cluster.conf"),
            "search_paths": [str(dirs["etc"]), str(dirs["run"]), str(dirs["usr"])],
            "sysctl_conf": str(conf)}
    return dirs, conf, base


def root_ip_forward():
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def test_apply_file_and_live_values_idempotent(netns, tmp_path):
    ns = netns
    root_before = root_ip_forward()
    dirs, conf, base = layout(tmp_path)
    (dirs["usr"] / "10-early.conf").write_text("net.ipv4.ip_forward = 0\n")      # sorts before ours: ours wins
    (dirs["etc"] / "95-same.conf").write_text("net/ipv4/ip_forward=1\n")         # later, but the same value
    conf.write_text("# nothing relevant\nnet.ipv4.tcp_syncookies = 1\n")
    settings = {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": "1",
                "net.ipv4.ip_local_port_range": "32768 60999"}   # live value is tab separated: equal
    args = dict(base, settings=settings)
    assert ns.sysctl("net.ipv4.ip_forward") == "0"
    check, first, second = ns.engine([S(args, check=True), S(args), S(args)])
    ok(check), ok(first), ok(second)
    assert check["changed"] and sorted(check["changed_keys"]) == ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    assert first["changed"] and first["file_changed"], "check mode must not have written anything"
    assert first["live_before"]["net.ipv4.ip_forward"] == "0" and first["live_after"]["net.ipv4.ip_forward"] == "1"
    assert first["conflicts"] == [] and first["diff"]["before"] == ""
    assert second["changed"] is False and second["changed_keys"] == [] and second["file_changed"] is False

    content = Path(base["file"]).read_text()
    assert content.startswith("# Managed by Ansible (podnet.cluster)")
    # write order, not sorted: forwarding last, so accept_ra and the others are in force before it
    assert content.splitlines()[2:] == ["net.ipv4.ip_local_port_range = 32768 60999", "net.ipv4.ip_forward = 1",
                                        "net.ipv6.conf.all.forwarding = 1"]
    assert oct(Path(base["file"]).stat().st_mode & 0o777) == "0o644"
    assert ns.sysctl("net.ipv4.ip_forward") == "1"
    assert ns.sysctl("net.ipv6.conf.all.forwarding") == "1"
    assert root_ip_forward() == root_before, "the machine's own namespace was changed"


def test_conflicts_refused_keys_and_warn(netns, tmp_path):
    ns = netns
    root_before = root_ip_forward()
    dirs, conf, base = layout(tmp_path)
    (dirs["etc"] / "99-late.conf").write_text("# admin\n\nnet.ipv4.ip_forward = 0\n")
    (dirs["usr"] / "99-hidden.conf").write_text("net.ipv4.ip_forward = 0\n")   # hidden by etc/99-hidden.conf
    (dirs["etc"] / "99-hidden.conf").write_text("# overrides the vendor file\n")
    conf.write_text("net.ipv6.conf.all.forwarding=0\n")
    good = {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1}
    conflict, non_net, unknown, warned = ns.engine([
        S(dict(base, settings=good)),
        S(dict(base, settings={"net.ipv4.ip_forward": 1, "kernel.pid_max": 65536})),
        S(dict(base, settings={"net.ipv4.no_such_key": 1})),
        S(dict(base, settings=good, conflicts="warn")),
    ])
    msg = failed(conflict)
    late = str(dirs["etc"] / "99-late.conf")
    assert late + " line 3 sets net.ipv4.ip_forward = 0, overriding our net.ipv4.ip_forward = 1" in msg
    assert str(conf) + " line 1 sets net.ipv6.conf.all.forwarding = 0" in msg
    assert "99-hidden" not in msg
    assert {(c["file"], c["line"], c["key"], c["value"], c["ours"]) for c in conflict["conflicts"]} == {
        (late, 3, "net.ipv4.ip_forward", "0", "1"), (str(conf), 1, "net.ipv6.conf.all.forwarding", "0", "1")}
    msg = failed(non_net)
    assert "kernel.pid_max" in msg and "net." in msg
    msg = failed(unknown)
    assert "net.ipv4.no_such_key" in msg and "does not exist" in msg

    ok(warned)
    assert warned["changed"] and len(warned["conflicts"]) == 2
    assert any("99-late.conf" in w for w in warned.get("warnings", []))
    assert ns.sysctl("net.ipv4.ip_forward") == "1"
    assert Path(base["file"]).exists()
    assert root_ip_forward() == root_before


def test_failures_write_nothing(netns, tmp_path):
    ns = netns
    dirs, conf, base = layout(tmp_path)
    (dirs["run"] / "95-late.conf").write_text("-net.ipv4.ip_forward = 0\n")
    # our file placed in /usr/lib-like dir while /etc-like dir has a file of the same name: ours is hidden
    (dirs["etc"] / "90-podnet-cluster.conf").write_text("# local override\n")
    hidden = dict(base, file=str(dirs["usr"] / "90-podnet-cluster.conf"), sysctl_conf="")
    late, shadowed = ns.engine([S(dict(base, settings={"net.ipv4.ip_forward": 1})),
                                S(dict(hidden, settings={"net.ipv4.ip_forward": 1}))])
    msg = failed(late)
    assert str(dirs["run"] / "95-late.conf") + " line 1 sets net.ipv4.ip_forward = 0" in msg
    msg = failed(shadowed)
    assert "hides it at boot" in msg and str(dirs["etc"] / "90-podnet-cluster.conf") in msg
    assert (dirs["etc"] / "90-podnet-cluster.conf").read_text() == "# local override\n"
    assert not (dirs["usr"] / "90-podnet-cluster.conf").exists()
    assert ns.sysctl("net.ipv4.ip_forward") == "0"
