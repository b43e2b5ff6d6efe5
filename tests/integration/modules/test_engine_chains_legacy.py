# SPDX-License-Identifier: Apache-2.0
"""The iptables engine on the legacy back end (iptables-legacy), and under a held xtables lock.

The node module finds iptables-save/-restore on PATH (then the sbin directories); here a directory whose tools
are the legacy ones comes first, as on a host whose alternatives point to legacy. The lock (/run/xtables.lock) is the test's own: the
run happens in a private mount namespace with its own /run.
"""

from __future__ import annotations

import os
import shutil

import pytest

from modtest_lib import ok, run_engine

LEGACY = {name: shutil.which(name.replace("tables-", "tables-legacy-"), path="/usr/sbin:/sbin:/usr/bin")
          for name in ("iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore")}

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(LEGACY.values()), reason="needs root and iptables-legacy")

MASQ = {"ip_version": 4, "table": "nat", "chains": [{
    "name": "PODNET-MASQ",
    "rules": [{"destination": "10.81.0.0/16", "comment": "no masquerade", "jump": "RETURN"},
              {"comment": "leaving the cluster", "jump": "MASQUERADE"}],
    "jumps": [{"from": "POSTROUTING", "source": "10.81.3.0/24", "dst_type": "!LOCAL"}]}]}


@pytest.fixture
def legacy_path(tmp_path):
    for name, target in LEGACY.items():
        os.symlink(target, tmp_path / name)
    return str(tmp_path)


def test_legacy_back_end_converges_and_is_idempotent(netns, legacy_path):
    step = {"engine": "chains", "args": MASQ}
    first, second = run_engine([step, step], netns=netns.name, path_prefix=legacy_path,
                               wrap="mount -t tmpfs tmpfs /run")
    assert ok(first)["changed"] and ok(second)["changed"] is False
    saved = netns.run(LEGACY["iptables-save"], "-t", "nat")
    assert "-A PODNET-MASQ -d 10.81.0.0/16" in saved and "-j PODNET-MASQ" in saved
    assert "PODNET-MASQ" not in netns.run("iptables-nft-save", "-t", "nat", check=False)


ENGINE = """
import json, sys
from ansible_collections.podnet.cluster.plugins.module_utils.engine.chains import apply_chains, plan_chains
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, ProcessRunner
runner = ProcessRunner()
spec = json.loads(sys.argv[-1])
try:
    change = plan_chains(runner, spec["ip_version"], spec["table"], spec["chains"])
    apply_chains(runner, change)
except EngineError as exc:
    print(exc.msg); sys.exit(1)
print("applied")
"""


def test_a_held_xtables_lock_is_waited_for(netns, legacy_path):
    """kube-proxy, Docker or firewalld holding the lock for a moment: the write waits (-w) instead of failing.

    The engine itself runs (no Ansible start-up in between), right after another process took the lock
    for 3 seconds, in a private /run of its own.
    """
    import json
    import subprocess

    from modtest_lib import BIN, REPO

    script = ("mount -t tmpfs tmpfs /run && (flock -x /run/xtables.lock sleep 3 &) && sleep 0.3 && "
              "exec %s -c \"$1\" engine \"$2\"" % (BIN / "python"))
    proc = subprocess.run(["ip", "netns", "exec", netns.name, "unshare", "--mount", "--propagation", "private",
                           "sh", "-c", script, "wrap", ENGINE, json.dumps(MASQ)],
                          env=dict(os.environ, PATH="%s:%s" % (legacy_path, os.environ["PATH"]),
                                   PYTHONPATH=str(REPO / ".collections")),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "applied" in proc.stdout, proc.stdout + proc.stderr
    assert "PODNET-MASQ" in netns.run(LEGACY["iptables-save"], "-t", "nat")
