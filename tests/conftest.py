# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Shared pytest set-up: import paths, the test tiers, and a guard that the machine's own network namespace is
never changed.

Tiers (markers, set here from where a test lives, so no test file has to remember them):

* ``unit``: everything under tests/unit; no root, no namespace, no lab.
* ``integration``: everything under tests/integration; real network namespaces, so root. Run without root,
  a selection that holds integration tests stops at once with a message (it never skips them silently).
* ``slow``: every integration test but those of ``FAST`` (tests of one module on a namespace or two, the
  collection's own checks): they converge whole labs. ``make check`` leaves them out; ``make test`` runs all.
  A new integration test is slow until it is listed in ``FAST``.

Scheduling on the cores (pytest-xdist, ``--dist loadgroup``; ``group_of`` below): the tests of a module that
builds a lab once (a module-scoped fixture) form one group that runs on one worker, so the lab is built once;
a module of ``SHARDS`` is cut into that many groups, each of which builds its own lab (lab names carry the
worker's pid); tests of ``SPREAD`` and the unit tests have no shared lab and go to whichever worker is free. Groups
start longest first (``COST``), so the longest ones do not start last.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
# <repo>/.collections/ansible_collections/podnet/cluster -> this checkout (make setup / make collection).
for _path in (REPO / ".collections", REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
# .../podnet/lab -> lab/ (podnet.lab), as make collection links it: also in a checkout set up before lab/ existed
_LAB_LINK = REPO / ".collections" / "ansible_collections" / "podnet" / "lab"
if _LAB_LINK.parent.is_dir() and not _LAB_LINK.is_symlink():
    try:
        _LAB_LINK.symlink_to("../../../lab")
    except FileExistsError:  # another pytest worker made it
        pass

from lib import rootns  # noqa: E402  (needs the path above)
from lib import cputime  # noqa: E402  (needs the path above)
from lib import labtools  # noqa: E402  (needs the path above)

INTEGRATION = REPO / "tests" / "integration"
MARKERS = {
    "unit": "no root, no namespace: runs anywhere",
    "integration": "real network namespaces on this machine: needs root",
    "slow": "converges whole labs; left out by make check",
    "scale": "a lab of 30 nodes or more (minutes on this machine); select with -m scale, leave out with -m 'not scale'",
}
# Integration tests quick enough for make check (paths under tests/integration, a file or a directory).
FAST = ("modules", "test_collection.py", "test_lint.py", "test_netns_connection.py", "gce/test_gce_standin.py",
        "verify/test_probe_server.py", "test_validate_hostvars.py")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", "%s: %s" % (name, text))
    # the CPU each test and module costs (tests/lib/cputime.py): its hooks, registered as a plugin of its own
    if not config.pluginmanager.is_registered(cputime):
        config.pluginmanager.register(cputime, "podnet-cputime")


# Where no module-scoped lab is shared, a test can run on any worker (paths under tests/integration).
SPREAD = ("test_plan_role.py", "test_molecule.py", "modules", "gce/test_gce_routes.py", "gce/test_gce_standin.py",
          "test_collection.py", "test_lint.py", "test_netns_connection.py", "test_validate_hostvars.py")
# Modules cut into this many groups, each on a lab of its own. A module's tests, in collection order, are cut into
# runs of consecutive tests of (nearly) the same count (``shard_groups``), so that the tests of one module-scoped
# lab stay together as far as they can. None today: every group builds and converges a lab of its own, which
# costs CPU, the suite's limit; the bad-input catalogue (90 cases) takes 110 s alone on a quiet machine, less than
# the lifecycle modules, as one group.
SHARDS: Dict[str, int] = {}
# Seconds of a group under the load of the whole suite: about two and a half times the CPU seconds of the module
# alone (docs/performance.md, the test loop, gives them; 4 workers share 2 cores); the longest start first. A group
# not listed counts as 60 s; a test of SPREAD, as 10 s; a unit test, as 1 s.
COST = {"verify/test_verify_scale.py": 640, "test_vxlan.py": 400, "test_operator.py": 300,
        "test_l2_bridge.py": 250, "test_lifecycle_settings.py": 250, "test_fabric_safety.py": 240,
        "test_uplink_bridge.py": 240, "test_lifecycle_runtimes.py": 200, "test_bad_inputs.py": 190,
        "test_lifecycle.py": 160, "verify/test_verify_lab.py": 130, "test_molecule.py": 120,
        "test_lab.py": 120, "test_ecosystem.py": 120, "test_drift.py": 90,
        # make check's longest: ansible-lint over the collection, ansible-doc of every plugin
        "test_lint.py": 90, "test_collection.py": 30}


def _under(rel: str, paths) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in paths)


def group_of(nodeid: str, shards: Optional[Dict[str, str]] = None) -> str:
    """The scheduling group of a test, from its node id (the xdist controller has no items, only ids) and, for a
    module of ``SHARDS``, the groups ``shard_groups`` gave the collection (without them: a hash of the id)."""
    path = nodeid.split("::", 1)[0]
    prefix = "tests/integration/"
    if not path.startswith(prefix) or _under(path[len(prefix):], SPREAD):
        return nodeid
    rel = path[len(prefix):]
    if rel in SHARDS:
        if shards and nodeid in shards:
            return shards[nodeid]
        return "%s#%d" % (rel, zlib.crc32(nodeid.encode()) % SHARDS[rel])
    return rel


def shard_groups(nodeids: Sequence[str]) -> Dict[str, str]:
    """{node id: group} for the tests of the ``SHARDS`` modules: each module's tests, in the order given, cut into
    ``SHARDS[module]`` runs of consecutive tests whose counts differ by one at most."""
    prefix = "tests/integration/"
    by_module: Dict[str, List[str]] = {}
    for nodeid in nodeids:
        rel = nodeid.split("::", 1)[0][len(prefix):] if nodeid.startswith(prefix) else ""
        if rel in SHARDS:
            by_module.setdefault(rel, []).append(nodeid)
    return {nodeid: "%s#%d" % (rel, i * SHARDS[rel] // len(ids))
            for rel, ids in by_module.items() for i, nodeid in enumerate(ids)}


def cost_of(nodeid: str) -> int:
    path = nodeid.split("::", 1)[0]
    prefix = "tests/integration/"
    if not path.startswith(prefix):
        return 1
    rel = path[len(prefix):]
    return COST.get(rel, 10 if _under(rel, SPREAD) else 60)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: xdist's group scheduling, with the groups of ``group_of`` (xdist's own reads an
    ``xdist_group`` mark through a node id attribute that pytest 9 no longer uses, so it would not group)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        shards: Optional[Dict[str, str]] = None

        def _split_scope(self, nodeid):
            # self.collection is set (the same on every worker) before the first call
            if self.shards is None and self.collection:
                self.shards = shard_groups(self.collection)
            return group_of(nodeid, self.shards)

    return Scheduling(config, log)


def pytest_collection_modifyitems(config, items):
    # longest groups first (xdist hands out groups in collection order with --no-loadscope-reorder); stable,
    # so a module's tests stay together and in order
    order = {item.nodeid: i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-cost_of(item.nodeid), order[item.nodeid]))
    for item in items:
        path = Path(str(item.fspath))
        if INTEGRATION not in path.parents:
            item.add_marker("unit")
            continue
        item.add_marker("integration")
        rel = path.relative_to(INTEGRATION)
        if not any(rel == Path(fast) or Path(fast) in rel.parents for fast in FAST):
            item.add_marker("slow")


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist), once
        labtools.reset_code_cache()


def pytest_collection_finish(session):
    if os.geteuid() == 0:
        return
    needs_root = [item.nodeid for item in session.items if item.get_closest_marker("integration")]
    if needs_root:
        raise pytest.UsageError(
            "%d selected tests are integration tests: they build network namespaces and need root (run as root, "
            "or select the unit tier: pytest -m unit). First: %s" % (len(needs_root), needs_root[0]))


@pytest.fixture(scope="session", autouse=True)
def root_netns_unchanged():
    """Snapshot the root network namespace at the start; fail the session if it differs at the end."""
    before = rootns.snapshot()
    yield before
    changes = rootns.diff(before, rootns.snapshot())
    if changes:
        pytest.fail("the machine's own network namespace changed during the tests:\n" + changes, pytrace=False)
