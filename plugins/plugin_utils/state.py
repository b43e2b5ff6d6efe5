# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The planner's state file: locked, read, rendered and written atomically.

Controller side only.  ``locked(path)`` serialises concurrent runs with an
exclusive ``flock`` on ``<path>.lock`` for the whole read-plan-write cycle;
``write_atomic`` writes a temporary file in the same directory, fsyncs it and
renames it over the old one, so a reader sees the old or the new file, never a
mix, and a failed run leaves the old file exactly as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Any, Dict, Iterator, Optional, Tuple

import yaml

from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write, file_mode

try:  # libyaml is ten times faster on large clusters
    from yaml import CSafeDumper as _Dumper, CSafeLoader as _Loader
except ImportError:  # pragma: no cover - pure-Python PyYAML
    from yaml import SafeDumper as _Dumper, SafeLoader as _Loader  # type: ignore[assignment]

HEADER = (
    "# podnet.cluster pod-CIDR plan state. Written by the podnet.cluster.plan role;\n"
    "# 'nodes' maps each inventory hostname to its pod CIDRs. A node keeps its subnets\n"
    "# while it stays in the inventory; 'released' lists blocks freed by removed nodes,\n"
    "# handed out again only when no never-used block is left. Edit with care.\n"
)


class StateFileError(ValueError):
    pass


@contextlib.contextmanager
def locked(path: str, write: bool = True) -> Iterator[Dict[str, float]]:
    """Hold a lock beside ``path`` for a read-plan-write cycle; yields ``{"waited": seconds}``.

    A run that finds the lock taken waits for it (never fails) and reports how long. ``write=False`` (check
    mode) creates nothing: it takes a shared lock on an existing lock file, or none at all.
    """
    info = {"waited": 0.0}
    lock = lock_path(path)
    if not write:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            yield info
            return
        mode = fcntl.LOCK_SH
    else:
        directory = os.path.dirname(os.path.abspath(path)) or "."
        os.makedirs(directory, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            started = time.monotonic()
            fcntl.flock(fd, mode)
            info["waited"] = round(time.monotonic() - started, 3)
        yield info
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def lock_path(path: str) -> str:
    """The lock file of ``path``: hidden (``.<name>.lock`` beside it), so that Ansible never reads it as inventory
    when the state file sits in an inventory directory."""
    directory, name = os.path.split(path)
    return os.path.join(directory, "." + name.lstrip(".") + ".lock")


def source(path: str, previous: Optional[str] = None) -> str:
    """Where the plan is read from: ``path``, or ``previous`` (the state file's former default place) while only
    that one exists. The next run that writes the plan writes ``path`` and retires ``previous``."""
    if previous and previous != path and not os.path.exists(path) and os.path.exists(previous):
        return previous
    return path


def retire(path: str) -> None:
    """Remove a state file whose plan now lives elsewhere, and its lock files (old and new names)."""
    for name in (path, path + ".lock", lock_path(path)):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def read(path: str) -> Tuple[Optional[Any], Optional[str]]:
    """(parsed data, raw text); (None, None) when the file does not exist."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise StateFileError("state file %s cannot be read: %s" % (path, exc))
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise StateFileError("state file %s is not valid: not YAML (%s)" % (path, str(exc).replace("\n", " ")))
    return data, text


def render(state: dict) -> str:
    body = yaml.dump(state, Dumper=_Dumper, default_flow_style=False, sort_keys=False, explicit_start=True)
    return HEADER + body


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` atomically, keeping the mode of an existing file."""
    atomic_write(path, text, mode=file_mode(path) or mode, create_dirs=True)
