# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The controller's side of the lab nodes' compile cache (``code_cache.py``): put the hook into the cache directory.

The ``podnet.lab.netns`` connection calls :func:`install_hook` before each command of a node whose inventory sets
``podnet_netns_code_cache``, and runs the command with the returned directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Optional

from ansible_collections.podnet.lab.plugins.module_utils import code_cache


@functools.lru_cache(maxsize=None)
def hook_text() -> str:
    """The hook's text: ``code_cache.py`` itself (read once per process)."""
    with open(os.path.abspath(code_cache.__file__), "r", encoding="utf-8") as own:
        return own.read()


def cache_dir_problem(cache_dir) -> Optional[str]:
    """Why ``cache_dir`` cannot be a compile cache directory, or None: its hook directory goes into the nodes'
    ``PYTHONPATH``, which takes an absolute path without ``:``."""
    if not isinstance(cache_dir, str) or not os.path.isabs(cache_dir):
        return "%r is not an absolute path" % (cache_dir,)
    if os.pathsep in cache_dir:
        return "%r contains %r, which PYTHONPATH cannot carry" % (cache_dir, os.pathsep)
    return None


def install_hook(cache_dir: str) -> str:
    """Check ``cache_dir`` and make ``<cache_dir>/hook/sitecustomize.py`` the hook (written atomically, only when it
    differs) with its bytecode beside it; the hook directory, for ``PYTHONPATH``. ValueError for a bad directory,
    OSError when it cannot be written."""
    problem = cache_dir_problem(cache_dir)
    if problem:
        raise ValueError(problem)
    hook = os.path.join(cache_dir, "hook")
    target = os.path.join(hook, "sitecustomize.py")
    try:
        with open(target, "r", encoding="utf-8") as current:
            written = current.read() == hook_text()
    except (OSError, ValueError):
        written = False
    if not written:
        # the first command of a lab (or a new hook): the collection's one file writer, imported only here, since
        # this runs before every command of every node
        from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import atomic_write  # pylint: disable=import-outside-toplevel

        atomic_write(target, hook_text(), create_dirs=True)
    if not written or not os.path.exists(importlib.util.cache_from_source(target)):
        compile_hook(target)
    return hook


def compile_hook(target: str) -> None:
    """Write the hook's bytecode beside it (``__pycache__``, for this Python's version): the node's Python then
    reads it instead of compiling the hook at every start, also under PYTHONDONTWRITEBYTECODE (which only stops
    writing). A Python of another version compiles the source as usual."""
    import py_compile  # pylint: disable=import-outside-toplevel  # only when the hook is written

    try:
        py_compile.compile(target, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    except (OSError, py_compile.PyCompileError):
        pass
