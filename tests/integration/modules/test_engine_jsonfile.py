# SPDX-License-Identifier: Apache-2.0
"""The JSON file engine (how podnet.cluster.node_state merges its keys into daemon.json), on files in a pytest tmp
dir (no namespace needed: it only writes the files it is given)."""

from __future__ import annotations

import json

from modtest_lib import failed, ok, run_engine

DOCKER = {"bridge": "cbr0", "iptables": False, "ip-masq": False, "mtu": 1450}
REFUSE = {"bip": "Docker refuses bip together with bridge; the pod bridge carries the gateway"}


def J(args, check=False):
    """A JSON file engine step; ``set`` is the engine's ``set_keys``."""
    args = dict(args)
    if "set" in args:
        args["set_keys"] = args.pop("set")
    return {"engine": "json", "args": args, "check": check}


def test_merge_keeps_other_keys_order_and_is_idempotent(tmp_path):
    path = tmp_path / "docker" / "daemon.json"
    path.parent.mkdir()
    path.write_text('{"log-driver": "json-file", "mtu": 1500, "iptables": true, "debug": false,'
                    ' "log-opts": {"max-size": "10m"}}')
    path.chmod(0o600)
    args = {"path": str(path), "set": DOCKER, "remove": ["debug", "not-there"], "refuse": REFUSE}
    check, first, second = run_engine([J(args, check=True), J(args), J(args)])
    ok(check), ok(first), ok(second)
    assert check["changed"] and first["changed"], "check mode must not have written anything"
    assert first["set_keys"] == ["bridge", "iptables", "ip-masq", "mtu"] and first["removed_keys"] == ["debug"]
    assert '"debug": false' in first["diff"]["before"] and '"bridge": "cbr0"' in first["diff"]["after"]
    assert second["changed"] is False and second["set_keys"] == [] and second["removed_keys"] == []

    text = path.read_text()
    data = json.loads(text)
    assert list(data) == ["log-driver", "mtu", "iptables", "log-opts", "bridge", "ip-masq"]
    assert data == {"log-driver": "json-file", "mtu": 1450, "iptables": False, "log-opts": {"max-size": "10m"},
                    "bridge": "cbr0", "ip-masq": False}
    assert text == json.dumps(data, indent=2) + "\n"
    # The file's own mode is kept (a 0600 daemon.json stays 0600); a new file gets 0644.
    assert path.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new" / "daemon.json"
    ok(run_engine([J({"path": str(fresh), "set": DOCKER, "create_dirs": True})])[0])
    assert fresh.stat().st_mode & 0o777 == 0o644


def test_refused_invalid_and_missing_files_are_never_written(tmp_path):
    bip = tmp_path / "bip.json"
    bip.write_text('{"bip": "172.17.0.1/16", "debug": true}\n')
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"bridge": "cbr0",,}\n')
    array = tmp_path / "array.json"
    array.write_text('["bridge"]\n')
    nodir = tmp_path / "missing" / "daemon.json"
    created = tmp_path / "new" / "etc" / "daemon.json"
    before = {p: p.read_bytes() for p in (bip, invalid, array)}
    r_bip, r_invalid, r_array, r_nodir, r_created, r_again = run_engine([
        J({"path": str(bip), "set": DOCKER, "refuse": REFUSE}),
        J({"path": str(invalid), "set": DOCKER}),
        J({"path": str(array), "set": DOCKER}),
        J({"path": str(nodir), "set": DOCKER}),
        J({"path": str(created), "set": DOCKER, "create_dirs": True}),
        J({"path": str(created), "set": DOCKER, "create_dirs": True}),
    ])
    msg = failed(r_bip)
    assert "bip" in msg and "Docker refuses bip" in msg and str(bip) in msg
    msg = failed(r_invalid)
    assert str(invalid) in msg and "not valid JSON" in msg
    msg = failed(r_array)
    assert "array" in msg and "not an object" in msg
    msg = failed(r_nodir)
    assert "does not exist" in msg and "create_dirs" in msg
    assert {p: p.read_bytes() for p in (bip, invalid, array)} == before
    assert not nodir.parent.exists()
    assert ok(r_created)["changed"] and r_created["created"] and ok(r_again)["changed"] is False
    assert json.loads(created.read_text()) == DOCKER
    assert sorted(p.name for p in created.parent.iterdir()) == ["daemon.json"], "temporary file left behind"
