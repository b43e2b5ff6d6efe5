# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Build the command line that runs a shell command "on" an emulated node.

An emulated node is a network namespace (``/run/netns/NAME``) plus, when a
per-node root directory is configured, its own copy-on-write view of
``/etc``, ``/var/lib`` and ``/run`` and its own host name.  This module is the
single place that knows how to enter such a node; the connection plugin
``podnet.lab.netns``, the module ``podnet.lab.lab_topology`` (which
starts each node's sshd in the node's view) and the testinfra backend in
``tests/lib`` all use :func:`build_argv`, and the connection and the testinfra
backend give their commands :func:`login_environment`.  Pure functions (but
:func:`login_environment`, which reads the user's password entry), standard
library only (a module_utils file, so that modules can ship it).

The command line is::

    nsenter --net=/run/netns/NAME -- \\
      unshare --mount --uts --propagation private -- \\
      /bin/sh -c 'SETUP; exec /bin/sh -c "$1"' podnet-netns 'COMMAND'

``SETUP`` runs in the new, private mount and UTS namespaces, so nothing it
mounts or sets is visible outside this one command (and its children):

* with a root directory ``ROOT``: for each of ``/etc``, ``/var/lib`` and
  ``/run`` an overlay whose lower layer is the real directory and whose upper
  layer is ``ROOT/upper/<etc|var-lib|run>``: reads see the machine's files
  plus the node's own changes, writes land only in the upper directory;
* always: ``mount -t sysfs sysfs /sys``, so ``/sys/class/net`` lists the
  node's links (as ``ip netns exec`` does);
* with a host name: ``hostname NAME`` in the new UTS namespace.

Every setup step must succeed: if one fails the command is *not* run (it
would otherwise see, and could write, the machine's real ``/etc``), and the
wrapper exits with :data:`SETUP_FAILED_RC` and a message that starts with
:data:`ERROR_PREFIX` on standard error.

The overlay work directory of each command is private to it
(``ROOT/work/<dir>/<pid>``): overlayfs empties a work directory whenever it
is mounted, which would break copy-up in a process still running from an
earlier command (a daemon, an async task) if the work directory were shared.
The upper directories are shared by every command of the node; the kernel
warns once ("upperdir is in-use ...") and a long-running process may not
notice files that other commands create later under those three trees.
"""

from __future__ import annotations

import os
import pwd
import shlex
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_ROOT_BASE",
    "ERROR_PREFIX",
    "NETNS_RUN_DIR",
    "OVERLAYS",
    "SETUP_FAILED_RC",
    "WRAPPER_NAME",
    "build_argv",
    "build_command",
    "default_root",
    "join",
    "login_environment",
    "netns_path",
    "node_environment",
    "overlay_dirs",
    "setup_script",
    "validate_hostname",
    "validate_root",
]

#: Where ``ip netns add`` keeps its named namespaces.
NETNS_RUN_DIR = "/run/netns"
#: ``$0`` of the wrapper shell; shows up in ``ps`` and in shell error messages.
WRAPPER_NAME = "podnet-netns"
#: Exit status of the wrapper when the node's view could not be set up.
SETUP_FAILED_RC = 125
#: Standard error of a failed setup starts with this.
ERROR_PREFIX = "podnet-netns:"
#: Where a node's layers live when the inventory gives no root: ``<base>/<namespace name>``.
DEFAULT_ROOT_BASE = "/var/tmp/podnet-netns"
#: (directory of the machine, name of its layer below ROOT/upper and ROOT/work)
OVERLAYS: Tuple[Tuple[str, str], ...] = (
    ("/etc", "etc"),
    ("/var/lib", "var-lib"),
    ("/run", "run"),
)

#: PATH of a command on a node: the default of a login on a Debian host (OpenSSH's, and login's for root).
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Variables of the controller a command on a node still gets: the locale, which OpenSSH's default
#: configuration sends (ssh_config SendEnv) and accepts (sshd_config AcceptEnv).
_LOCALE_VARIABLES = ("LANG", "LANGUAGE")

NSENTER = "nsenter"
UNSHARE = "unshare"
SHELL = "/bin/sh"

# Characters that overlayfs' option parser or our own quoting cannot carry
# in a layer path.
_BAD_ROOT_CHARS = (",", ":", "\n", "\r", "\0", "\\")


def netns_path(netns: str) -> str:
    """Path of the network namespace file to enter.

    ``netns`` is either the name of a namespace made by ``ip netns add``
    (``/run/netns/<netns>``) or, when it contains a slash, a path to a
    namespace file such as ``/proc/1234/ns/net``.

    >>> netns_path("lab-node1")
    '/run/netns/lab-node1'
    >>> netns_path("/proc/42/ns/net")
    '/proc/42/ns/net'
    """
    if not isinstance(netns, str) or not netns.strip():
        raise ValueError("network namespace: a name or a path is required, got %r" % (netns,))
    if "\0" in netns or "\n" in netns:
        raise ValueError("network namespace: %r contains a control character" % (netns,))
    if "/" in netns:
        if not netns.startswith("/"):
            raise ValueError("network namespace: %r is neither a plain name nor an absolute path" % (netns,))
        return netns
    if netns in (".", ".."):
        raise ValueError("network namespace: %r is not a valid name" % (netns,))
    return "%s/%s" % (NETNS_RUN_DIR, netns)


def default_root(netns: str, base: str = DEFAULT_ROOT_BASE) -> str:
    """The per-node root of a namespace whose inventory gives none: ``<base>/<name>``.

    A node must never write the machine's own ``/etc``, ``/var/lib`` or ``/run``, so every node gets its
    layers, also one made by hand with ``ip netns add``. A namespace given as a path
    (``/proc/42/ns/net``) gets ``<base>/proc-42-ns-net``.

    >>> default_root("n1")
    '/var/tmp/podnet-netns/n1'
    >>> default_root("/proc/42/ns/net")
    '/var/tmp/podnet-netns/proc-42-ns-net'
    """
    path = netns_path(netns)
    key = netns if "/" not in netns else path.strip("/").replace("/", "-")
    return validate_root("%s/%s" % (base.rstrip("/"), key))


def validate_root(root: str) -> str:
    """Return ``root`` without trailing slashes, or raise ``ValueError``.

    The root must be absolute, must not be ``/`` and must not lie inside one
    of the overlaid directories (overlayfs refuses an upper layer inside its
    lower layer), and must not contain characters that the overlay mount
    options cannot carry.
    """
    if not isinstance(root, str) or not root.startswith("/"):
        raise ValueError("node root directory: %r is not an absolute path" % (root,))
    for char in _BAD_ROOT_CHARS:
        if char in root:
            raise ValueError("node root directory: %r contains %r, which an overlay mount cannot use" % (root, char))
    clean = root.rstrip("/")
    if not clean:
        raise ValueError("node root directory: '/' cannot hold a node's layers")
    for machine_dir, _layer in OVERLAYS:
        if clean == machine_dir or clean.startswith(machine_dir + "/"):
            raise ValueError(
                "node root directory: %s is inside %s, which is overlaid on every node; "
                "use a directory elsewhere, e.g. under /var/tmp" % (clean, machine_dir)
            )
    return clean


def validate_hostname(hostname: str) -> str:
    """Return ``hostname`` or raise ``ValueError`` (1-64 characters, no blanks or control characters)."""
    if not isinstance(hostname, str) or not 0 < len(hostname) <= 64:
        raise ValueError("host name: %r must have 1 to 64 characters" % (hostname,))
    if any(c.isspace() or ord(c) < 32 or c == "/" for c in hostname):
        raise ValueError("host name: %r contains a blank, a slash or a control character" % (hostname,))
    return hostname


def overlay_dirs(root: str) -> List[Tuple[str, str, str]]:
    """``(machine dir, upper dir, work base dir)`` for each overlaid directory of a node.

    The work directory of one command is ``<work base dir>/<pid>``.

    >>> overlay_dirs("/var/tmp/lab/n1")[0]
    ('/etc', '/var/tmp/lab/n1/upper/etc', '/var/tmp/lab/n1/work/etc')
    """
    clean = validate_root(root)
    return [
        (machine_dir, "%s/upper/%s" % (clean, layer), "%s/work/%s" % (clean, layer))
        for machine_dir, layer in OVERLAYS
    ]


def setup_script(root: Optional[str] = None, hostname: Optional[str] = None, remount_sys: bool = True) -> str:
    """Shell code run inside the fresh mount and UTS namespaces before the command.

    It stops at the first failing step with :data:`SETUP_FAILED_RC`. ``remount_sys=False`` keeps the
    machine's ``/sys`` (and so ``/sys/fs/cgroup``), for daemons such as dockerd that need cgroups.
    """
    q = shlex.quote
    lines: List[str] = ["fail() { echo \"%s $*\" >&2; exit %d; }" % (ERROR_PREFIX, SETUP_FAILED_RC)]
    if root is not None:
        dirs = overlay_dirs(root)
        mkdirs = []
        for _machine_dir, upper, work in dirs:
            mkdirs += [q(upper), q(work) + '/"$$"']
        lines.append("mkdir -p %s || fail cannot create the overlay directories under %s"
                     % (" ".join(mkdirs), q(validate_root(root))))
        for machine_dir, upper, work in dirs:
            opts = "lowerdir=%s,upperdir=%s,workdir=%s" % (machine_dir, upper, work)
            # The work dir ends in the shell's PID, so that part stays outside the quotes.
            lines.append(
                "mount -t overlay overlay -o %s/\"$$\" %s || fail cannot overlay %s"
                % (q(opts), q(machine_dir), q(machine_dir))
            )
    if remount_sys:
        lines.append("mount -t sysfs sysfs /sys || fail cannot mount sysfs on /sys")
    if hostname is not None:
        name = q(validate_hostname(hostname))
        lines.append("hostname %s || fail cannot set the host name %s" % (name, name))
    return "; ".join(lines)


def node_environment(controller: Mapping[str, str], user: str, home: str, shell: str = SHELL) -> Dict[str, str]:
    """The environment of a command on a node: that of a login to a host, not the controller's.

    A real host reached over SSH never sees the variables of the shell that runs Ansible
    (``PYTHONPATH``, ``VIRTUAL_ENV``, ``PYTHONUNBUFFERED``, a virtualenv first in ``PATH``); an emulated
    node must not either, or it would run its modules differently (``PYTHONUNBUFFERED=1`` alone makes the
    node's Python read a module sent on standard input one byte per system call). The node gets what a
    login gives: ``PATH`` (:data:`NODE_PATH`), ``HOME``, ``USER``, ``LOGNAME`` and ``SHELL``, plus the
    controller's locale (``LANG``, ``LANGUAGE``, ``LC_*``), which OpenSSH passes on by default.

    >>> env = node_environment({"LANG": "C.UTF-8", "LC_TIME": "C", "PYTHONUNBUFFERED": "1",
    ...                         "PATH": "/srv/venv/bin:/usr/bin"}, user="root", home="/root")
    >>> sorted(env)
    ['HOME', 'LANG', 'LC_TIME', 'LOGNAME', 'PATH', 'SHELL', 'USER']
    >>> env["PATH"] == NODE_PATH
    True
    """
    env = {name: value for name, value in controller.items()
           if name in _LOCALE_VARIABLES or name.startswith("LC_")}
    env.update(PATH=NODE_PATH, HOME=home, USER=user, LOGNAME=user, SHELL=shell)
    return env


def login_environment() -> Dict[str, str]:
    """:func:`node_environment` of this process's environment, for the user running it (name, home, login shell)."""
    user = pwd.getpwuid(os.geteuid())
    return node_environment(os.environ, user=user.pw_name, home=user.pw_dir, shell=user.pw_shell or SHELL)


def build_argv(netns: str, command: str, root: Optional[str] = None,
               hostname: Optional[str] = None, remount_sys: bool = True) -> List[str]:
    """argv that runs ``command`` (a ``/bin/sh -c`` string) on the node.

    :param netns: namespace name (``/run/netns/<netns>``) or path to a namespace file.
    :param command: shell command, run by ``/bin/sh -c`` as the last step (``exec``),
        so its exit status, standard input and output are the wrapper's.
    :param root: per-node root directory; enables the overlays of ``/etc``,
        ``/var/lib`` and ``/run`` (layers under ``<root>/upper`` and ``<root>/work``).
    :param hostname: host name set in the command's own UTS namespace.
    :param remount_sys: mount a fresh sysfs (the node's links in ``/sys/class/net``); off for daemons
        that need the machine's ``/sys/fs/cgroup``.
    """
    if not isinstance(command, str):
        raise ValueError("command: a shell command string is required, got %r" % (command,))
    script = "%s; exec %s -c \"$1\"" % (setup_script(root, hostname, remount_sys), SHELL)
    return [
        NSENTER, "--net=%s" % netns_path(netns), "--",
        UNSHARE, "--mount", "--uts", "--propagation", "private", "--",
        SHELL, "-c", script, WRAPPER_NAME, command,
    ]


def build_command(netns: str, command: str, root: Optional[str] = None,
                  hostname: Optional[str] = None) -> str:
    """:func:`build_argv` as one shell-quoted string (for logs, ``sh -c`` or ``ssh``)."""
    return join(build_argv(netns, command, root=root, hostname=hostname))


def join(argv: Sequence[str]) -> str:
    """``shlex.join`` (kept here so callers need only this module)."""
    return " ".join(shlex.quote(a) for a in argv)
