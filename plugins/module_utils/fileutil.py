# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Small file helpers for the podnet.cluster modules (target side, stdlib only)."""

from __future__ import annotations

import os
import stat
import tempfile


def read_text(path):
    """Content of ``path`` as text, or ``None`` when it does not exist."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def file_mode(path):
    """Permission bits of ``path`` or ``None``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def atomic_write(path, content, mode=0o644, create_dirs=False):
    """Write ``content`` (text) to ``path`` atomically.

    The data goes to a temporary file in the same directory, is flushed and
    fsynced, gets ``mode`` and replaces ``path`` with ``os.replace``; readers see
    either the old or the new file, never a partial one. Owner and group of an
    existing file are kept.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if create_dirs:
        os.makedirs(directory, exist_ok=True)
    owner = None
    try:
        st = os.stat(path)
        owner = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            try:
                os.chown(tmp, owner[0], owner[1])
            except PermissionError:
                pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
