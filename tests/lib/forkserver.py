# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Run the tests' ``ansible-playbook`` and ``ansible`` commands from an interpreter that has imported Ansible already.

Starting ``ansible-playbook`` costs about 0.35 CPU-s before it reads its first playbook, nearly all of it importing
ansible-core (docs/performance.md); the suite starts it about 450 times. :func:`run` gives the same command the same
process a fresh start would give, minus that import: a server (this file run as a program, one per command line
script, working directory and environment, started by the pytest worker that needs it) imports the script's
modules once, as the script itself would, then forks a child for each command, which runs the unchanged script as
``__main__`` with the command's arguments, its standard input, output and error (passed as file descriptors), and
exits as a script does (``sys.exit``, the exit handlers, the streams flushed). The server waits for the child and
sends back its exit status and its CPU (``wait4``).

What a fresh start would see, the child sees:

* The same environment and working directory: a server serves one environment (every variable but the few that
  change from test to test without being read at import, ``VOLATILE``, which the child sets) and one working
  directory, and is started in them, so the import reads the same configuration; a command in another
  environment gets a server of its own. The configuration files Ansible reads (``ANSIBLE_CONFIG``,
  ``./ansible.cfg``, ``~/.ansible.cfg``, ``/etc/ansible/ansible.cfg``) are part of the key by their identity and
  modification time: a changed file gets a new server.
* Ansible's one value made for the process at import, its local temporary directory (``ansible-local-<pid>...``),
  is made again in the child, with the child's pid; the exit handlers registered by the server are dropped; the
  random generator is seeded again.
* What the import printed (warnings) is printed again by each child first.

One thing differs, on purpose: the modules' payloads (AnsiballZ zips), which a run builds once per module and
keeps for its own later tasks, are kept by the server for its later children too, as long as they are exactly what
the child would build (:class:`_ZipCache`; ``PODNET_TEST_FORKSERVER_ZIPS=0`` turns it off). Building one costs a
run about 0.2 CPU-s (ansible-core reads and parses every module utility the module imports), and the suite runs the
same few modules about 400 times.

A server starts for the second command of an environment (``START_AFTER``): a test that runs one command in an
environment of its own (stand-in programs first on the ``PATH``) runs it as a plain process.

Only ``PODNET_TEST_FORKSERVER=0`` turns it off (every command is then a plain ``subprocess.run``); a program that is
not a Python console script, or a server that cannot start, falls back to the same. The programs' own start-up
stays covered: molecule, ansible-runner, the concurrent runs of ``test_concurrency`` and ``test_plan_role``, the
runs inside a namespace of ``test_uplink_bridge`` and ``make demo`` start the real programs.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

# Environment variables that change between the commands of a session without being read at import: the child
# sets them, they are not part of a server's key.
VOLATILE = ("PYTEST_CURRENT_TEST",)
ENV_SWITCH = "PODNET_TEST_FORKSERVER"
ZIPS_SWITCH = "PODNET_TEST_FORKSERVER_ZIPS"  # "0": every child builds its modules' zips, as a run of its own does
_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, message: dict, fds=()) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], list(fds))
    else:
        sock.sendall(payload)


def _recv(sock: socket.socket, want_fds: int = 0):
    """(message, fds), or (None, []) at the end of the stream."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, want_fds) if want_fds else (
        sock.recv(_HEADER.size), [], 0, None)
    while head and len(head) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(head))
        if not more:
            break
        head += more
    if len(head) < _HEADER.size:
        for fd in fds:
            os.close(fd)
        return None, []
    (size,) = _HEADER.unpack(head)
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            return None, list(fds)
        data += more
    return json.loads(data), list(fds)


# -- the server (this file as a program) ----------------------------------------------------------------------------

def _serve(script: str, sock_fd: int) -> None:
    """Import what ``script`` imports, then run it once per request in a forked child (which returns from here to
    exit as a script does)."""
    import atexit
    import random
    import runpy

    sock = socket.socket(fileno=sock_fd)
    # the script's own import, with its directory first on the path as a script run has it, under __name__ other
    # than "__main__" (so its main does not run)
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__podnet_forkserver__")
    # what the import printed (standard output and error are files of the client's) is printed by every child
    printed = []
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        stream.flush()
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while True:
            more = os.read(fd, 65536)
            if not more:
                break
            data += more
        printed.append(data)
    _send(sock, {"ready": os.getpid()})
    zips = _ZipCache()
    server = os.getpid()
    try:
        _serve_requests(script, sock, printed, zips)
    finally:
        if os.getpid() == server:  # a child returns through here to exit as the script: the folder is not its own
            zips.close()


class _ZipCache:
    """The modules' payloads (AnsiballZ zips) the children built, kept for the next children of this server.

    ansible-playbook builds a module's zip once per run, in the ``ansiballz_cache`` folder of its local temporary
    directory, and every later task of the run that calls the module takes it from there. A child's folder is a link
    to this server's, so a run takes the zips an earlier run of the same server built, as long as they are what the
    run would build itself:

    * after each child, a zip it built is kept only if every file in it (but the packages' ``__init__.py``, which
      the zip makes itself) is the file of that name on Ansible's collection path or in its installation: a module
      from anywhere else (a playbook's ``library``, ``ANSIBLE_LIBRARY``, a collection beside a playbook) is never
      taken from an earlier run;
    * before each child, the modules and module utilities of every collection on the collection path are compared
      with those of the zips' time (name, size, inode, modification time): any change starts a new folder;
    * a command whose playbook (or ``--playbook-dir``) has a ``collections`` folder beside it, which may hold
      other collections of the same names, keeps its zips to itself, as a run of its own does.
    """

    def __init__(self):
        self.root = None
        self.folder = None
        self.generation = None
        self.vetted = set()

    @staticmethod
    def sources(constants) -> list:
        seen = []
        for base in constants.COLLECTIONS_PATHS or []:
            top = os.path.join(base, "ansible_collections")
            for namespace in sorted(os.listdir(top)) if os.path.isdir(top) else []:
                for name in sorted(os.listdir(os.path.join(top, namespace))):
                    for kind in ("modules", "module_utils"):
                        walk = os.walk(os.path.join(top, namespace, name, "plugins", kind), followlinks=True)
                        for folder, dirs, files in walk:
                            dirs.sort()
                            for file in sorted(files):
                                info = os.stat(os.path.join(folder, file))
                                seen.append((folder, file, info.st_size, info.st_ino, info.st_mtime_ns))
        return seen

    def prepare(self, constants) -> None:
        """Before a child: the folder of the current sources (a new one when any changed)."""
        import tempfile

        generation = self.sources(constants)
        if self.folder is None or generation != self.generation:
            if self.root is None:
                self.remove_stale(tempfile.gettempdir())
                self.root = tempfile.mkdtemp(prefix="podnet-forkserver-zips-%d-" % os.getpid())
            self.folder = tempfile.mkdtemp(dir=self.root)
            self.generation = generation
            self.vetted = set()

    def link(self, constants, argv: list) -> None:
        """In the child: its ``ansiballz_cache`` folder is a link to the server's folder (unless its playbook has
        collections beside it)."""
        beside = []
        for before, arg in zip(argv, argv[1:]):
            if before == "--playbook-dir":
                beside.append(arg)
            elif arg.startswith("--playbook-dir="):
                beside.append(arg.split("=", 1)[1])
            elif os.path.isfile(arg):
                beside.append(os.path.dirname(os.path.abspath(arg)))
        if os.environ.get(ZIPS_SWITCH) != "0" and not any(os.path.isdir(os.path.join(folder, "collections"))
                                                          for folder in beside):
            os.symlink(self.folder, os.path.join(constants.DEFAULT_LOCAL_TMP, "ansiballz_cache"))

    def vet(self, constants) -> None:
        """After a child: keep what it built only if every file in it is the one on the collection path."""
        for name in os.listdir(self.folder) if self.folder else []:
            path = os.path.join(self.folder, name)
            if name in self.vetted or name.endswith((".lock", "-part")):
                continue
            if not self.is_current(path, constants):
                os.unlink(path)
                continue
            self.vetted.add(name)

    @staticmethod
    def is_current(path: str, constants) -> bool:
        import base64
        import io
        import pickle
        import zipfile

        import ansible

        installed = os.path.dirname(os.path.dirname(ansible.__file__))
        try:
            with open(path, "rb") as cached:
                payload = zipfile.ZipFile(io.BytesIO(base64.b64decode(pickle.load(cached).zip_data)))
        except Exception:  # pylint: disable=broad-except  # anything unreadable is not kept
            return False
        for member in payload.namelist():
            if member.endswith("/__init__.py") or member == "__init__.py":
                continue
            bases = constants.COLLECTIONS_PATHS if member.startswith("ansible_collections/") else [installed]
            found = [os.path.join(b, member) for b in bases or [] if os.path.isfile(os.path.join(b, member))]
            if not found:
                return False
            with open(found[0], "rb") as source:
                if source.read() != payload.read(member):
                    return False
        return True

    @staticmethod
    def remove_stale(folder: str) -> None:
        """The folders of servers that are gone (killed before they could remove their own)."""
        import shutil

        for name in os.listdir(folder):
            parts = name.split("-")
            if name.startswith("podnet-forkserver-zips-") and len(parts) > 4 and parts[3].isdigit():
                try:
                    os.kill(int(parts[3]), 0)
                except ProcessLookupError:
                    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
                except OSError:
                    pass

    def close(self) -> None:
        if self.root is not None:
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)


def _serve_requests(script: str, sock: socket.socket, printed: list, zips: _ZipCache) -> None:
    import atexit
    import random
    import runpy

    while True:
        request, fds = _recv(sock, want_fds=3)
        if request is None:
            return
        constants = sys.modules.get("ansible.constants")
        if constants is not None and not hasattr(constants, "config"):
            constants = None
        if constants is not None:
            zips.prepare(constants)
        pid = os.fork()
        if pid == 0:
            sock.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                if fd > 2:
                    os.close(fd)
            for fd, data in zip((1, 2), printed):
                while data:
                    data = data[os.write(fd, data):]
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = list(request["argv"])
            atexit._clear()  # pylint: disable=protected-access  # the server's handlers are not the child's
            random.seed()
            if constants is not None:
                # made at import with the server's pid (and removed at its exit): the child makes its own
                constants.DEFAULT_LOCAL_TMP = constants.config.get_config_value("DEFAULT_LOCAL_TMP",
                                                                                variables=vars(constants))
                zips.link(constants, sys.argv)
            runpy.run_path(script, run_name="__main__")
            return
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})
        _pid, status, usage = os.wait4(pid, 0)
        if constants is not None:
            zips.vet(constants)
        _send(sock, {"returncode": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime})


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
    sys.exit(0)


# -- the client (imported by the tests) -----------------------------------------------------------------------------

import atexit  # noqa: E402  (the server above imports nothing it does not need)
import hashlib  # noqa: E402
import io  # noqa: E402
import locale  # noqa: E402
import selectors  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

from lib import cputime  # noqa: E402

SERVED = ("ansible-playbook", "ansible")
MAX_SERVERS = 8
START_AFTER = 1  # commands of an environment that run as plain processes before a server starts for it


class _Server:
    def __init__(self, script: str, python: str, cwd: str, env: Dict[str, str]):
        parent, child = socket.socketpair()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                self.proc = subprocess.Popen([python, os.path.abspath(__file__), script, str(child.fileno())],
                                             cwd=cwd, env=env, pass_fds=(child.fileno(),),
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            finally:
                child.close()
            self.sock = parent
            self.busy = threading.Lock()  # one command at a time; a second one at once runs as a plain subprocess
            self.served = 0.0  # CPU of the commands it ran, counted as this process's children's already
            parent.settimeout(120)
            try:
                ready, _fds = _recv(parent)
            except OSError:
                ready = None
            parent.settimeout(None)
            if not ready or "ready" not in ready:
                self.close()
                err.seek(0)
                raise OSError("the fork server of %s did not start: %s" % (script, err.read().decode(errors="replace")))

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # waited for, the server's children are this process's children's now: count them once
        cputime.add_served(-getattr(self, "served", 0.0))


_servers: Dict[str, _Server] = {}
_seen: Dict[str, int] = {}
_lock = threading.Lock()


def _console_script(path: str) -> Optional[str]:
    """The interpreter of a Python console script (its ``#!`` line), or None."""
    try:
        with open(path, "rb") as script:
            first = script.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if len(words) != 1 or "python" not in os.path.basename(words[0]):
        return None
    return words[0]


def _config_files(cwd: str, env: Dict[str, str]) -> List[str]:
    return [env.get("ANSIBLE_CONFIG", ""), os.path.join(cwd, "ansible.cfg"),
            os.path.expanduser("~/.ansible.cfg"), "/etc/ansible/ansible.cfg"]


def server_key(script: str, cwd: str, env: Dict[str, str]) -> str:
    """What a server's import depends on: the script, the working directory, the environment but ``VOLATILE``, and
    the identity and modification time of each configuration file Ansible may read."""
    stats = []
    for path in _config_files(cwd, env):
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        stats.append([path, st and [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]])
    material = json.dumps([script, os.path.realpath(cwd), sorted((k, v) for k, v in env.items() if k not in VOLATILE),
                           stats])
    return hashlib.sha256(material.encode()).hexdigest()


def _server_for(script: str, cwd: str, env: Dict[str, str]) -> Optional[_Server]:
    if os.environ.get(ENV_SWITCH, "1") == "0" or os.path.basename(script) not in SERVED:
        return None
    python = _console_script(script)
    if python is None:
        return None
    key = server_key(script, cwd, env)
    server = _servers.get(key)
    if server is not None:
        if server.proc.poll() is None:
            return server
        _forget(server)  # it went away (killed): reaped, its commands' CPU counted once
    # a server costs what a plain start costs: started for an environment seen before, not for a one-off one (a
    # test's own directory of stand-in programs on the PATH, say)
    _seen[key] = _seen.get(key, 0) + 1
    if _seen[key] <= START_AFTER:
        return None
    if len(_servers) >= MAX_SERVERS:  # the oldest idle server goes
        idle = next((k for k, s in _servers.items() if s.busy.acquire(blocking=False)), None)
        if idle is None:
            return None
        _servers.pop(idle).close()
    try:
        server = _Server(script, python, cwd, {k: v for k, v in env.items() if k not in VOLATILE})
    except OSError:
        return None
    _servers[key] = server
    return server


def shutdown() -> None:
    """End every server of this process (each also ends by itself when this process goes)."""
    with _lock:
        while _servers:
            _servers.popitem()[1].close()


atexit.register(shutdown)


def run(argv: Sequence[str], cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    # pylint: disable=redefined-builtin  # subprocess.run's own name
    """``subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout)``
    (standard input /dev/null without ``input``), run by a server where one serves the command. The CPU of a
    served command and of what it waited for is counted as this process's children's (lib.cputime)."""
    argv = [str(a) for a in argv]
    cwd = str(cwd or os.getcwd())
    env = dict(os.environ if env is None else env)
    with _lock:
        server = _server_for(argv[0], cwd, env)
        if server is not None and not server.busy.acquire(blocking=False):
            server = None
    if server is None:
        return subprocess.run(argv, cwd=cwd, env=env, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    try:
        proc, cpu = _run_on(server, argv, env, timeout, input)
        server.served += cpu
    finally:
        server.busy.release()
    cputime.add_served(cpu)
    return proc


def _run_on(server: _Server, argv: List[str], env: Dict[str, str], timeout: Optional[float],
            input: Optional[str]) -> Tuple[subprocess.CompletedProcess, float]:
    # pylint: disable=redefined-builtin
    in_r, in_w = os.pipe()
    if input is None:
        os.close(in_w)
    else:
        data = input.encode(locale.getpreferredencoding(False))

        def feed():
            with open(in_w, "wb") as pipe:
                try:
                    pipe.write(data)
                except BrokenPipeError:
                    pass

        threading.Thread(target=feed, daemon=True).start()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        _send(server.sock, {"argv": argv, "env": env}, fds=(in_r, out_w, err_w))
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    chunks: Dict[int, List[bytes]] = {out_r: [], err_r: []}
    result: dict = {}
    pid: Optional[int] = None
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    selector = selectors.DefaultSelector()
    for fd in (out_r, err_r):
        selector.register(fd, selectors.EVENT_READ)
    selector.register(server.sock, selectors.EVENT_READ)
    try:
        while selector.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                if timed_out:
                    break
                timed_out = True
                if pid is not None and "returncode" not in result:
                    # the command and everything it started (Ansible's workers leave its process group)
                    _kill_tree(pid)
                deadline = time.monotonic() + 30  # what it started may hold the pipes open: that long at most
                continue
            for key, _events in selector.select(wait):
                if key.fileobj is server.sock:
                    message, _fds = _recv(server.sock)
                    if message is None:  # the server went away (killed): the command is lost with it
                        selector.unregister(server.sock)
                        _forget(server)
                        result.setdefault("returncode", -signal.SIGKILL)
                    elif "pid" in message:
                        pid = message["pid"]
                        if timed_out:  # the time ran out while the server was still starting: kill it now
                            _kill_tree(pid)
                    else:
                        result = message
                        selector.unregister(server.sock)
                else:
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
    finally:
        selector.close()
        os.close(out_r)
        os.close(err_r)
    stdout, stderr = (_text(b"".join(chunks[fd])) for fd in (out_r, err_r))
    if timed_out:
        raise subprocess.TimeoutExpired(argv, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(argv, result["returncode"], stdout, stderr), result.get("cpu", 0.0)


def _kill_tree(pid: int) -> None:
    """Kill ``pid`` and every process below it, by PID.

    Each process found is stopped first and the tree read again, until a reading finds nothing new: a stopped
    process starts no child, so a process forked while the tree was read is found by the next reading instead
    of being left behind, orphaned, when its parent is killed.
    """
    stopped: List[int] = []
    found = [pid] + _descendants(pid)
    while found:
        for member in found:
            _signal(member, signal.SIGSTOP)
        stopped.extend(found)
        found = [child for child in _descendants(pid) if child not in stopped]
    for member in stopped:
        _signal(member, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _descendants(pid: int) -> List[int]:
    """The processes below ``pid``, from /proc (parent by parent)."""
    parents: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _text(data: bytes) -> str:
    """Bytes as ``subprocess.run(text=True)`` gives them: the locale's encoding, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


def _forget(server: _Server) -> None:
    """Drop a server that went away, and reap it (``close``: its commands' CPU is then counted once)."""
    for key, known in list(_servers.items()):
        if known is server:
            del _servers[key]
    server.close()
