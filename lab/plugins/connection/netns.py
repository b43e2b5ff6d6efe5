# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Connection plugin: run tasks inside a network namespace of the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: Run tasks "on" an emulated node, a network namespace of the controller
description:
  - Runs every command, module and file transfer of a host inside a Linux network
    namespace of the Ansible controller, so that one machine can emulate several
    hosts (the lab of the collection podnet.lab, see C(ansible-playbook podnet.lab.lab)).
  - Each command is wrapped as
    C(nsenter --net=/run/netns/NS -- unshare --mount --uts --propagation private -- /bin/sh -c 'SETUP; exec /bin/sh -c "$1"' podnet-netns COMMAND).
    The new mount namespace is private to that one command, so nothing mounted
    by C(SETUP) is ever seen by the machine or by another node.
  - C(SETUP) always mounts a fresh sysfs on C(/sys), so C(/sys/class/net) lists
    the node's own links (as C(ip netns exec) does).
  - "B(Per-node files.) C(SETUP) also mounts a
    copy-on-write overlay over C(/etc), C(/var/lib) and C(/run): the lower layer
    is the machine's real directory, the upper layer is
    C(<root>/upper/etc), C(.../upper/var-lib) and C(.../upper/run), where C(<root>) is
    O(podnet_netns_root), by default C(/var/tmp/podnet-netns/<namespace name>).
    A node therefore reads the machine's files plus its own changes, and
    everything it writes there (a sysctl.d file, a CNI config, host-local
    leases, a daemon.json, pid files) lands only in its own upper directory:
    two nodes never see each other's files, and the machine's own C(/etc) is
    never touched. The host name is set in the command's own UTS namespace
    (O(podnet_netns_hostname))."
  - "B(Environment.) Each command gets the environment a login to a host would
    give, not the controller's: C(PATH) (C(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)),
    C(HOME), C(USER), C(LOGNAME) and C(SHELL) of the user running Ansible, and the
    locale variables C(LANG), C(LANGUAGE) and C(LC_*), which OpenSSH passes on by
    default. Variables of the shell that runs Ansible (C(PYTHONPATH),
    C(VIRTUAL_ENV), C(PYTHONUNBUFFERED), a virtualenv first in C(PATH)) never reach the node."
  - Other paths (C(/root), C(/tmp), C(/usr), C(/opt), ...) are the machine's
    own and shared by all nodes; Ansible's temporary files live there (with
    unique names), which is harmless.
  - File transfers go through the same wrapper (C(cat > path) with the file on
    standard input, C(cat path) to fetch), so a copied file lands in the node's
    view, never in the machine's C(/etc).
  - Works for namespaces built by hand (C(ip netns add NAME)); only
    O(podnet_netns) (or the inventory host name) is needed then. Such a node
    gets its own layers too (the default O(podnet_netns_root)), so a node never
    writes the machine's own C(/etc/docker/daemon.json), C(/etc/cni/net.d),
    C(/etc/sysctl.d) or anything else under C(/etc), C(/var/lib) and C(/run).
    The entries of C(/etc/netns/NAME) are not bind-mounted as C(ip netns exec)
    does; put such files into the node's C(<root>/upper/etc) instead.
  - When the layers cannot be set up (the root cannot be created, overlayfs is
    missing), the command is not run and the host is reported unreachable;
    there is no way to run a command with the machine's own C(/etc) writable.
  - Needs C(nsenter) and C(unshare) (util-linux), C(mount), and root on the
    controller.
author: podnet.cluster maintainers (!UNKNOWN)
version_added: 0.1.0
options:
  remote_addr:
    description:
      - Address of the host; used as the namespace name when O(podnet_netns) is not set.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
  podnet_netns:
    description:
      - Name of the network namespace (C(/run/netns/<name>), as made by C(ip netns add)),
        or an absolute path to a namespace file such as C(/proc/PID/ns/net).
      - Defaults to O(remote_addr), that is C(ansible_host) or else the inventory host name.
    type: str
    vars:
      - name: podnet_netns
  podnet_netns_root:
    description:
      - Per-node root directory. C(/etc), C(/var/lib) and C(/run) are
        copy-on-write overlays whose upper layers are C(<root>/upper/etc),
        C(<root>/upper/var-lib) and C(<root>/upper/run) (created when missing),
        and the host name is set to O(podnet_netns_hostname).
      - Default C(/var/tmp/podnet-netns/<namespace name>) (a namespace given as a
        path, C(/proc/42/ns/net), gets C(/var/tmp/podnet-netns/proc-42-ns-net)).
        It is left behind when the namespace goes; remove it with the namespace.
        There is no way to turn the layers off.
      - Each command gets its own overlay work directory C(<root>/work/<layer>/<pid>);
        these small directories are left behind and removed with the lab.
      - Must be absolute, outside C(/etc), C(/var/lib) and C(/run), without C(,) or C(:).
    type: path
    vars:
      - name: podnet_netns_root
  podnet_netns_hostname:
    description:
      - Host name seen by commands on the node (set in a private UTS namespace).
      - Defaults to the namespace name; for a namespace given as a path the host
        name is left alone unless this option is set.
    type: str
    vars:
      - name: podnet_netns_hostname
  podnet_netns_code_cache:
    description:
      - A directory of the controller where the node's Python keeps the code it compiles from a module's zip
        (AnsiballZ), so that the next module call of any node with the same directory reads it instead of
        compiling it again (on a lab of many nodes, about a third of each module call's CPU time).
      - Each command then runs with C(PYTHONPATH) naming C(<dir>/hook), which holds the cache's
        C(sitecustomize.py) (written there by this plugin), and C(PODNET_NETNS_CODE_CACHE=<dir>). The node's
        own C(sitecustomize), if any, still runs after it. See the lab's docs/lab.md.
      - Not set (the default for namespaces built by hand) - every module call compiles its zip, as on a real
        host. The lab's inventory sets it to C(<lab root>/code-cache), which goes with the lab.
      - Must be absolute and must not contain C(:).
    type: str
    version_added: 0.2.0
    vars:
      - name: podnet_netns_code_cache
extends_documentation_fragment:
  - connection_pipelining
notes:
  - Commands run as the user running Ansible (root). Privilege escalation
    (C(become)) is not supported; the lab inventory sets C(ansible_become=false)
    so that plays written with C(become=true) still work.
  - The overlay upper layers are shared by every command of a node; a process
    that keeps running (a daemon) may not notice files that later commands
    create under C(/etc), C(/var/lib) or C(/run) (the kernel logs
    "upperdir is in-use"). Configure, then start.
  - The fresh sysfs hides C(/sys/fs/cgroup), as with C(ip netns exec).
  - Overlaying C(/run) hides the entries of C(/run/netns) inside a node; refer
    to other namespaces as C(/proc/PID/ns/net) there.
seealso:
  - name: The podnet.lab lab
    description: docs/lab.md of the collection podnet.lab.
    link: https://example.invalid/podnet/cluster/lab/docs/lab.md
"""

EXAMPLES = r"""
# Inventory for two namespaces built by hand (each gets its own /etc, /var/lib
# and /run layers under /var/tmp/podnet-netns/<name>):
#   ip netns add n1; ip netns add n2
all:
  hosts:
    n1:
    n2:
  vars:
    ansible_connection: podnet.lab.netns
    ansible_python_interpreter: /usr/bin/python3

# A lab node with its own /etc, /var/lib, /run and host name
# (what `ansible-playbook podnet.lab.lab` generates):
#   lab-node1:
#     ansible_connection: podnet.lab.netns
#     podnet_netns: lab-node1
#     podnet_netns_root: /var/tmp/podnet-lab/lab/lab-node1
"""

import os
import shlex
import subprocess
import typing as t

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.utils.display import Display

from ansible_collections.podnet.lab.plugins.module_utils import code_cache, code_cache_hook
from ansible_collections.podnet.lab.plugins.module_utils.netns import (
    ERROR_PREFIX,
    SETUP_FAILED_RC,
    build_argv,
    default_root,
    join,
    login_environment,
    netns_path,
    validate_hostname,
    validate_root,
)

display = Display()


class Connection(LocalConnection):
    """Run commands and transfer files inside a network namespace (see DOCUMENTATION)."""

    transport = "podnet.lab.netns"
    has_pipelining = True
    has_tty = False

    # -- option handling ---------------------------------------------------

    def _node(self) -> t.Tuple[str, str, t.Optional[str]]:
        """(netns, root, hostname) from the options, validated; root defaults to :func:`default_root`."""
        netns = self.get_option("podnet_netns") or self.get_option("remote_addr") or self._play_context.remote_addr
        if not netns or netns == "inventory_hostname":
            raise AnsibleConnectionFailure("podnet.lab.netns: no network namespace given (set podnet_netns)")
        root = self.get_option("podnet_netns_root") or None
        hostname = self.get_option("podnet_netns_hostname") or None
        try:
            netns_path(netns)
            # Every node has its own layers: without them a task would write the machine's /etc.
            root = validate_root(root) if root is not None else default_root(netns)
            if hostname is None:
                hostname = os.path.basename(netns) if "/" not in netns else None
            if hostname is not None:
                validate_hostname(hostname)
        except ValueError as exc:
            raise AnsibleConnectionFailure("podnet.lab.netns: %s" % exc) from exc
        return netns, root, hostname

    def _env(self) -> t.Dict[str, str]:
        """The environment of every command on the node: a login's (netns.login_environment), not the
        controller's, plus the compile cache's variables when podnet_netns_code_cache is set."""
        env = login_environment()
        cache = self.get_option("podnet_netns_code_cache")
        if cache:
            try:
                env["PYTHONPATH"] = code_cache_hook.install_hook(cache)
            except (OSError, ValueError) as exc:
                raise AnsibleConnectionFailure("podnet.lab.netns: podnet_netns_code_cache: %s" % exc) from exc
            env[code_cache.ENV] = cache
        return env

    def _argv(self, command: str) -> t.List[str]:
        netns, root, hostname = self._node()
        return build_argv(netns, command, root=root, hostname=hostname)

    # -- ConnectionBase ----------------------------------------------------

    def _connect(self) -> "Connection":
        if not self._connected:
            netns, root, hostname = self._node()
            path = netns_path(netns)
            if not os.path.exists(path):
                raise AnsibleConnectionFailure(
                    "podnet.lab.netns: network namespace %s does not exist (%s); "
                    "build it first (ansible-playbook podnet.lab.lab, or ip netns add %s)" % (netns, path, netns)
                )
            display.vvv(
                "ESTABLISH NETNS CONNECTION: netns=%s root=%s hostname=%s" % (netns, root or "-", hostname or "-"),
                host=self._play_context.remote_addr,
            )
        return super()._connect()

    def _check_setup(self, rc: int, stderr: bytes) -> None:
        if rc == SETUP_FAILED_RC and to_bytes(ERROR_PREFIX) in stderr:
            raise AnsibleConnectionFailure(
                "podnet.lab.netns: cannot set up the node's view: %s" % to_text(stderr, errors="surrogate_or_strict").strip()
            )

    def exec_command(self, cmd: str, in_data: t.Optional[bytes] = None, sudoable: bool = True) -> t.Tuple[int, bytes, bytes]:
        """Run ``cmd`` (a shell command string) on the node; ``in_data`` goes to its standard input."""
        if not self._connected:
            self._connect()
        if sudoable and self.become is not None:
            raise AnsibleError(
                "podnet.lab.netns does not support privilege escalation (become); commands already run as %s. "
                "Set ansible_become: false for this host." % (self.default_user or "the controller user")
            )
        argv = self._argv(to_text(cmd, errors="surrogate_or_strict"))
        env = self._env()
        display.vvv("EXEC %s%s" % ("PYTHONPATH=%s " % env["PYTHONPATH"] if "PYTHONPATH" in env else "", join(argv)),
                    host=self._play_context.remote_addr)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise AnsibleConnectionFailure("podnet.lab.netns: cannot run nsenter: %s" % to_native(exc)) from exc
        stdout, stderr = proc.communicate(in_data)
        self._check_setup(proc.returncode, stderr)
        return proc.returncode, stdout, stderr

    def put_file(self, in_path: str, out_path: str) -> None:
        """Copy a controller file to ``out_path`` in the node's view (``cat > out_path``)."""
        if not self._connected:
            self._connect()
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._play_context.remote_addr)
        b_in = to_bytes(in_path, errors="surrogate_or_strict")
        if not os.path.exists(b_in):
            raise AnsibleFileNotFound("file or module does not exist: %s" % to_native(in_path))
        argv = self._argv("cat > %s" % _quote(out_path))
        with open(b_in, "rb") as source:
            proc = subprocess.run(argv, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                                  env=self._env())
        self._check_setup(proc.returncode, proc.stderr)
        if proc.returncode != 0:
            raise AnsibleError(
                "podnet.lab.netns: failed to transfer %s to %s: %s"
                % (in_path, out_path, to_text(proc.stderr, errors="surrogate_or_strict").strip())
            )

    def fetch_file(self, in_path: str, out_path: str) -> None:
        """Copy ``in_path`` of the node's view to ``out_path`` on the controller (``cat in_path``)."""
        if not self._connected:
            self._connect()
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._play_context.remote_addr)
        argv = self._argv("cat -- %s" % _quote(in_path))
        b_out = to_bytes(out_path, errors="surrogate_or_strict")
        try:
            with open(b_out, "wb") as target:
                proc = subprocess.run(argv, stdout=target, stderr=subprocess.PIPE, check=False, env=self._env())
        except OSError as exc:
            raise AnsibleError("podnet.lab.netns: cannot write %s: %s" % (out_path, to_native(exc))) from exc
        if proc.returncode != 0:
            try:
                os.unlink(b_out)
            except OSError:
                pass
            self._check_setup(proc.returncode, proc.stderr)
            raise AnsibleFileNotFound(
                "podnet.lab.netns: failed to fetch %s: %s"
                % (in_path, to_text(proc.stderr, errors="surrogate_or_strict").strip())
            )


def _quote(path: str) -> str:
    return shlex.quote(to_text(path, errors="surrogate_or_strict"))
