# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""A testinfra backend that runs commands "on" an emulated lab node.

Commands go through the very wrapper the ``podnet.lab.netns`` connection
uses (:func:`build_argv` of ``lab/plugins/module_utils/netns.py``), so a test sees
what a task sees: the node's network namespace, its own ``/etc``, ``/var/lib``
and ``/run`` (with a root directory), its host name and a login's environment. One command costs a few
milliseconds, against about 0.7 s for testinfra's ansible backend.

Usage::

    from lib.netns_backend import netns_host, lab_hosts
    node1 = netns_host("lab-node1", root="/var/tmp/podnet-lab/lab/lab-node1")
    assert node1.interface("eth0").exists
    hosts = lab_hosts("inventories/lab/hosts.yml")   # {name: Host} of a generated lab inventory

Needs ``<repo>/.collections`` on ``sys.path`` (tests/conftest.py puts it there).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Dict, Optional

import testinfra.backend.base
import testinfra.host

from ansible_collections.podnet.lab.plugins.module_utils.netns import build_argv, join, login_environment


class NetnsBackend(testinfra.backend.base.BaseBackend):
    """testinfra backend for a network namespace, optionally with a per-node root directory."""

    NAME = "podnet-netns"

    def __init__(self, netns: str, root: Optional[str] = None, hostname: Optional[str] = None,
                 **kwargs: Any) -> None:
        self.netns = netns
        self.root = root
        if hostname is None and root is not None and "/" not in netns:
            hostname = netns
        self.node_hostname = hostname
        super().__init__(netns, **kwargs)

    def get_pytest_id(self) -> str:
        return "podnet-netns://" + self.netns

    @classmethod
    def get_hosts(cls, host: str, **kwargs: Any) -> list[str]:
        return [host]

    def argv(self, command: str) -> list[str]:
        """The full command line that runs ``command`` on the node."""
        return build_argv(self.netns, command, root=self.root, hostname=self.node_hostname)

    def run(self, command: str, *args: str, **kwargs: Any) -> testinfra.backend.base.CommandResult:
        cmd = self.get_command(command, *args)
        argv = self.argv(cmd)
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=False, env=login_environment())
        return self.result(proc.returncode, self.encode(join(argv)), proc.stdout, proc.stderr)


def netns_host(name: str, root: Optional[str] = None, hostname: Optional[str] = None) -> testinfra.host.Host:
    """A testinfra Host whose commands run on the node ``name`` (namespace name or path).

    With ``root`` (the inventory's ``podnet_netns_root``) the node's own ``/etc``,
    ``/var/lib``, ``/run`` and host name are used, as with the connection plugin.
    """
    backend = NetnsBackend(name, root=root, hostname=hostname)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


def lab_hosts(inventory: str) -> Dict[str, testinfra.host.Host]:
    """{inventory host name: Host} for every host of a lab inventory (hosts.yml written by the lab role)."""
    import yaml

    with open(inventory) as fh:
        data = yaml.safe_load(fh) or {}
    found: Dict[str, Dict[str, Any]] = {}

    def walk(group: Dict[str, Any]) -> None:
        for name, hostvars in (group.get("hosts") or {}).items():
            found.setdefault(name, {}).update(hostvars or {})
        for child in (group.get("children") or {}).values():
            walk(child or {})

    for group in data.values():
        walk(group or {})
    return {
        name: netns_host(hv.get("podnet_netns", name), root=hv.get("podnet_netns_root"),
                         hostname=hv.get("podnet_netns_hostname"))
        for name, hv in found.items()
    }


def netns_exists(name: str) -> bool:
    """True when /run/netns/<name> exists."""
    return os.path.exists(os.path.join("/run/netns", name))
