# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Small file helpers for the podnet.cluster modules (target side, stdlib only)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
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


def make_dirs(directory, mode=0o755):
    """Create ``directory`` and its missing parents; returns the ones this call created (outermost first)."""
    missing = []
    current = os.path.abspath(directory)
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created = []
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
            created.append(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
    return created


def _selinux_context(path):
    """The SELinux context of ``path`` through the python binding, or None (no binding, disabled, no label)."""
    try:
        import selinux  # noqa: F401  (python3-libselinux, present where SELinux is)
    except ImportError:
        return None
    try:
        if not selinux.is_selinux_enabled():
            return None
        return selinux.lgetfilecon_raw(path)[1]
    except (OSError, AttributeError):
        return None


def copy_selinux_context(reference, path):
    """Give ``path`` the SELinux context of ``reference``, best effort (as AnsibleModule.atomic_move does).

    Through the python binding when it is installed, else ``chcon --reference`` when SELinux is enabled (its
    file system is mounted). Nothing at all on a host without SELinux. Returns True when a context was set.
    """
    context = _selinux_context(reference)
    if context is not None:
        try:
            import selinux
            selinux.lsetfilecon(path, context)
            return True
        except (OSError, ImportError, AttributeError):
            return False
    if not os.path.isdir("/sys/fs/selinux") or not os.path.exists("/sys/fs/selinux/enforce"):
        return False
    chcon = shutil.which("chcon")
    if not chcon:
        return False
    try:
        return subprocess.run([chcon, "--reference=%s" % reference, path], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False).returncode == 0
    except OSError:
        return False


def write_if_changed(path, content):
    """Write ``content`` to ``path`` with ``atomic_write`` (its directory made when missing, mode 0644); False,
    and nothing written, when the file already holds it."""
    if read_text(path) == content:
        return False
    atomic_write(path, content, mode=0o644, create_dirs=True)
    return True


def atomic_write(path, content, mode=0o644, create_dirs=False, keep_mode=False):
    """Write ``content`` (text) to ``path`` atomically; returns the directories it created.

    The one file writer of the collection. The data goes to a temporary file in the same directory as the
    file, is flushed and fsynced, gets ``mode`` (``keep_mode``: an existing file's own mode), the owner, group
    and SELinux context of the file it replaces, and replaces it with ``os.replace``; readers see either the old
    or the new file, never a partial one. Where ``path`` is a symbolic link (an operator keeps the file
    elsewhere), the link stays and its target is written.
    """
    path = os.path.abspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)
    directory = os.path.dirname(path)
    created = make_dirs(directory) if create_dirs else []
    owner = None
    existed = False
    try:
        st = os.stat(path)
        owner = (st.st_uid, st.st_gid)
        existed = True
        if keep_mode:
            mode = stat.S_IMODE(st.st_mode)
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
        if existed:
            copy_selinux_context(path, tmp)
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
    return created
