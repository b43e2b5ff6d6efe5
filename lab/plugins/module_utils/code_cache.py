# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""A compile cache for the modules a lab node runs: the code objects Python compiles from a module's zip, kept.

Ansible sends each module as a zip (AnsiballZ) that Python imports with ``zipimport``, which never writes or reads
bytecode: every module call compiles ``ansible.module_utils.basic`` and every other file of the zip from source
again (on this kind of machine about a third of a module call's CPU time). A real host pays that on every call too;
a lab of many nodes on one machine pays it for all of them.

With the connection option ``podnet_netns_code_cache`` (set by the lab's inventory), the ``podnet.lab.netns``
connection runs each command with this file as ``sitecustomize`` (``PYTHONPATH``) and the cache directory in
``PODNET_NETNS_CODE_CACHE``. On import it wraps ``zipimport._compile_source``: a file whose source was compiled
before (same source, same path inside the zip, same Python bytecode version and optimisation level) is read from
the cache with ``marshal``, with the file name of this run's zip, instead of being compiled. Nothing else of the
module's run changes: the same source gives the same code object. An unreadable or damaged entry is compiled again
and rewritten; a cache that cannot be written is simply not used. Within one process, a module's code is found
in its zip once, not twice as Python 3.11's ``zipimport`` does (:func:`remember_module_code`). Then the node's own
``sitecustomize`` (the one this file shadows on ``sys.path``), if any, is run as usual.

Only the standard library: the file runs on the node's Python, outside Ansible.
"""

from __future__ import annotations

import importlib.machinery
import marshal
import os
import sys
import types
import zipimport

# hashlib and importlib.util are imported where they are used: every Python the node starts runs this file first,
# and only a module's zip needs them (together they cost more than the rest of this file).

#: The environment variable that holds the cache directory (set by the connection plugin).
ENV = "PODNET_NETNS_CODE_CACHE"


def cache_key(pathname: str, source: bytes) -> str:
    """The entry name of a zip member's code: SHA-256 of the bytecode version, the optimisation level, the path
    inside the zip (the part after ``.zip/``: the zip's own temporary name changes on every call) and the source."""
    import hashlib  # pylint: disable=import-outside-toplevel  # see the imports above
    import importlib.util  # pylint: disable=import-outside-toplevel

    inner = pathname.split(".zip" + os.sep, 1)[-1]
    digest = hashlib.sha256()
    for part in (importlib.util.MAGIC_NUMBER, str(sys.flags.optimize).encode(), inner.encode("utf-8", "surrogateescape")):
        digest.update(part)
        digest.update(b"\0")
    digest.update(source)
    return digest.hexdigest()


def with_filename(code, filename: str):
    """``code`` and every code object nested in it (functions, classes, comprehensions) with ``co_filename``
    set to ``filename``, so that tracebacks name this run's zip."""
    consts = tuple(with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def entry_path(cache_dir: str, key: str) -> str:
    return os.path.join(cache_dir, key[:2], key)


def load(cache_dir: str, key: str, pathname: str):
    """The code of entry ``key`` (renamed to ``pathname``), or None when there is no good entry."""
    try:
        with open(entry_path(cache_dir, key), "rb") as entry:
            code = marshal.loads(entry.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(code, types.CodeType):
        return None
    return with_filename(code, pathname)


def store(cache_dir: str, key: str, code) -> bool:
    """Write ``code`` as entry ``key`` atomically (a file of this process, renamed); False when it cannot.
    This file runs outside the collection, so it cannot use podnet.cluster's file writer; a cache entry needs
    none of its fsync, mode and owner handling either."""
    path = entry_path(cache_dir, key)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as entry:
            entry.write(marshal.dumps(code))
        os.replace(tmp, path)
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


def install(cache_dir: str) -> None:
    """Make ``zipimport`` take compiled code from ``cache_dir`` and put what it compiles there."""
    compile_source = getattr(zipimport, "_compile_source", None)
    if compile_source is None or getattr(compile_source, "podnet_code_cache", None) is not None:
        return

    def cached_compile_source(pathname, source):
        key = cache_key(pathname, source)
        code = load(cache_dir, key, pathname)
        if code is None:
            code = compile_source(pathname, source)
            store(cache_dir, key, code)
        return code

    cached_compile_source.podnet_code_cache = cache_dir
    zipimport._compile_source = cached_compile_source
    remember_module_code()


def remember_module_code() -> None:
    """Make ``zipimport`` find a module's code in a zip once per process. Python 3.11's ``zipimporter`` finds it twice
    for every import (``get_filename``, which ``importlib`` asks for the module's spec, then ``get_code``), each time
    decompressing the file and compiling it (here: reading it from the cache); the second time returns what the first
    found (the same zip, prefix and module name give the same code, as zipimport's own directory cache assumes)."""
    get_module_code = getattr(zipimport, "_get_module_code", None)
    if get_module_code is None or getattr(get_module_code, "podnet_code_cache", None) is not None:
        return
    found: dict = {}

    def remembered_module_code(importer, fullname):
        key = (importer.archive, importer.prefix, fullname)
        code = found.get(key)
        if code is None:
            code = found[key] = get_module_code(importer, fullname)
        return code

    remembered_module_code.podnet_code_cache = True
    zipimport._get_module_code = remembered_module_code


def run_shadowed_sitecustomize(here: str) -> None:
    """Run the ``sitecustomize`` that this file shadows on ``sys.path`` (the node's own), if there is one."""
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = types.ModuleType(spec.name)
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    try:
        spec.loader.exec_module(module)
    except Exception:  # pylint: disable=broad-exception-caught  # as site.py treats a failing sitecustomize
        pass


if __name__ == "sitecustomize":
    if os.environ.get(ENV):
        install(os.environ[ENV])
    run_shadowed_sitecustomize(os.path.dirname(os.path.abspath(__file__)))
