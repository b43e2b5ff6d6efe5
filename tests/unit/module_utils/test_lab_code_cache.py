# SPDX-License-Identifier: Apache-2.0
"""The lab nodes' compile cache (lab/plugins/module_utils/code_cache.py), with Python's real zipimport: what it
writes, that a second import from another zip reads it, that a damaged entry is compiled again, the hook file."""

from __future__ import annotations

import importlib
import importlib.util
import marshal
import os
import subprocess
import sys
import traceback
import zipfile
import zipimport
from pathlib import Path

import pytest

from ansible_collections.podnet.lab.plugins.module_utils import code_cache, code_cache_hook

MODULE = "podnet_cc_probe"
SOURCE = b"def where():\n    raise RuntimeError('from the zip')\n\nVALUE = 41 + 1\n"


@pytest.fixture()
def zipimport_restored(monkeypatch):
    """install() replaces zipimport._compile_source and _get_module_code of this process: put the real ones back
    afterwards."""
    monkeypatch.setattr(zipimport, "_compile_source", zipimport._compile_source)
    monkeypatch.setattr(zipimport, "_get_module_code", zipimport._get_module_code)
    yield
    sys.modules.pop(MODULE, None)


def make_zip(path: Path, source: bytes = SOURCE) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("%s.py" % MODULE, source)
    return path


def import_from(archive: Path):
    sys.modules.pop(MODULE, None)
    sys.path.insert(0, str(archive))
    try:
        return importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(archive))
        sys.path_importer_cache.pop(str(archive), None)


def entries(cache: Path) -> list:
    """The cache's entries (not its hook)."""
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")
                  if p.is_file() and (cache / "hook") not in p.parents)


def test_the_key_changes_with_the_source_and_the_path_inside_the_zip_but_not_the_zips_own_name():
    key = code_cache.cache_key("/tmp/a_payload_x1/p.zip/ansible/module_utils/basic.py", b"x = 1\n")
    assert key == code_cache.cache_key("/tmp/a_payload_y2/p.zip/ansible/module_utils/basic.py", b"x = 1\n")
    assert key != code_cache.cache_key("/tmp/a_payload_x1/p.zip/ansible/module_utils/basic.py", b"x = 2\n")
    assert key != code_cache.cache_key("/tmp/a_payload_x1/p.zip/ansible/module_utils/urls.py", b"x = 1\n")
    assert len(key) == 64 and int(key, 16) >= 0


def test_a_second_import_from_another_zip_reads_the_cache_with_that_zips_file_name(tmp_path, zipimport_restored):
    cache = tmp_path / "cache"
    code_cache.install(str(cache))
    first = import_from(make_zip(tmp_path / "one.zip"))
    assert first.VALUE == 42
    written = entries(cache)
    key = code_cache.cache_key(str(tmp_path / "one.zip" / ("%s.py" % MODULE)), SOURCE)
    assert written == ["%s/%s" % (key[:2], key)]
    # Prove the second import reads the entry: replace it by the code of other source (same key).
    (cache / written[0]).write_bytes(marshal.dumps(compile("VALUE = 'from the cache'\n", "x", "exec")))
    second = import_from(make_zip(tmp_path / "two.zip"))
    assert second.VALUE == "from the cache"
    assert entries(cache) == written


def test_tracebacks_name_the_zip_of_this_run(tmp_path, zipimport_restored):
    cache = tmp_path / "cache"
    code_cache.install(str(cache))
    import_from(make_zip(tmp_path / "one.zip"))
    module = import_from(make_zip(tmp_path / "two.zip"))  # from the cache
    with pytest.raises(RuntimeError) as info:
        module.where()
    frames = traceback.extract_tb(info.tb)
    assert frames[-1].filename == str(tmp_path / "two.zip" / ("%s.py" % MODULE))


def test_a_damaged_entry_is_compiled_again_and_rewritten(tmp_path, zipimport_restored):
    cache = tmp_path / "cache"
    code_cache.install(str(cache))
    import_from(make_zip(tmp_path / "one.zip"))
    [entry] = entries(cache)
    (cache / entry).write_bytes(b"not marshal data")
    assert import_from(make_zip(tmp_path / "two.zip")).VALUE == 42
    assert marshal.loads((cache / entry).read_bytes()).co_filename.endswith("two.zip/%s.py" % MODULE)


def test_a_cache_that_cannot_be_written_is_not_used(tmp_path, zipimport_restored):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code_cache.install(str(blocker / "cache"))
    assert import_from(make_zip(tmp_path / "one.zip")).VALUE == 42


def test_a_module_is_read_from_its_zip_once_per_import(tmp_path, zipimport_restored, monkeypatch):
    """zipimport finds a module's code for its spec (get_filename) and again to run it (get_code): each time it
    decompresses the file and compiles it, or reads it from the cache. Installed, the second time is remembered."""
    calls = []
    original = zipimport._get_module_code

    def counted(importer, fullname):
        calls.append(fullname)
        return original(importer, fullname)

    monkeypatch.setattr(zipimport, "_get_module_code", counted)
    assert import_from(make_zip(tmp_path / "one.zip")).VALUE == 42
    assert calls == [MODULE, MODULE]  # without the cache: twice (Python 3.11's zipimport)
    calls.clear()
    code_cache.install(str(tmp_path / "cache"))
    module = import_from(make_zip(tmp_path / "two.zip"))
    assert module.VALUE == 42 and module.__file__ == str(tmp_path / "two.zip" / ("%s.py" % MODULE))
    assert calls == [MODULE]
    # another zip is another module: found again
    assert import_from(make_zip(tmp_path / "three.zip", b"VALUE = 3\n")).VALUE == 3
    assert calls == [MODULE, MODULE]


def test_install_twice_wraps_once(tmp_path, zipimport_restored):
    code_cache.install(str(tmp_path / "a"))
    wrapped = zipimport._compile_source
    code_cache.install(str(tmp_path / "b"))
    assert zipimport._compile_source is wrapped and wrapped.podnet_code_cache == str(tmp_path / "a")


def test_the_hook_is_this_file_written_once_and_bad_directories_are_refused(tmp_path):
    cache = tmp_path / "cache"
    hook = Path(code_cache_hook.install_hook(str(cache)))
    target = hook / "sitecustomize.py"
    assert hook == cache / "hook"
    assert target.read_bytes() == Path(code_cache.__file__).read_bytes()
    before = target.stat().st_mtime_ns
    os.utime(target, ns=(before - 10**9, before - 10**9))
    code_cache_hook.install_hook(str(cache))
    assert target.stat().st_mtime_ns == before - 10**9  # same text: not written again
    # its bytecode beside it, for the node's Python to read instead of compiling the hook at every start
    bytecode = Path(importlib.util.cache_from_source(str(target)))
    assert marshal.loads(bytecode.read_bytes()[16:]).co_filename == str(target)
    bytecode.unlink()
    code_cache_hook.install_hook(str(cache))
    assert bytecode.exists() and target.stat().st_mtime_ns == before - 10**9  # the source itself not rewritten
    target.write_text("# an older hook\n")
    code_cache_hook.install_hook(str(cache))
    assert target.read_bytes() == Path(code_cache.__file__).read_bytes()
    for bad in ("relative/cache", str(tmp_path / "a:b"), ""):
        with pytest.raises(ValueError):
            code_cache_hook.install_hook(bad)


def test_as_sitecustomize_it_caches_and_then_runs_the_sitecustomize_it_shadows(tmp_path):
    """A fresh interpreter with the hook first on PYTHONPATH and another sitecustomize after it: both run."""
    cache = tmp_path / "cache"
    hook = code_cache_hook.install_hook(str(cache))
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['PODNET_CC_OTHER'] = 'ran'\n")
    archive = make_zip(tmp_path / "one.zip")
    script = ("import os, sys, zipimport; sys.path.insert(0, %r); import %s; "
              "print(%s.VALUE, os.environ.get('PODNET_CC_OTHER'), hasattr(zipimport._compile_source, "
              "'podnet_code_cache'))" % (str(archive), MODULE, MODULE))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([hook, str(other)]), **{code_cache.ENV: str(cache)})
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["42", "ran", "True"], out.stderr
    assert len(entries(cache)) == 1
    env.pop(code_cache.ENV)  # without the directory: no cache, the other sitecustomize still runs
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["42", "ran", "False"], out.stderr
