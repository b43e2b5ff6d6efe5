# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The lab's inventory file (``<inventory_dir>/hosts.yml``): its text and its idempotent, atomic write."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import read_text, write_if_changed

try:
    import yaml
except ImportError:  # PyYAML comes with ansible-core on the controller, where the lab module runs
    yaml = None

FILE_NAME = "hosts.yml"


def inventory_text(name: str, inventory: Dict[str, Any], run_prefix: Optional[str] = None) -> str:
    """hosts.yml of the lab ``name``: a header that says what it is and how to remove the lab, then the inventory
    as block YAML in the order the module built it. ``run_prefix``: a lab served over SSH (the command prefix that
    runs a program in the lab's controller namespace)."""
    if yaml is None:
        raise RuntimeError("writing the lab inventory needs PyYAML (python3-yaml)")
    lines = [
        '# Inventory of the podnet lab "%s", written by podnet.lab.lab_topology.' % name,
        "# Every host is a network namespace of this machine, reached with the podnet.lab.netns",
        "# connection (own /etc, /var/lib, /run, host name).",
        "# Remove the lab: ansible-playbook podnet.lab.lab -e podnet_lab_state=absent -e podnet_lab_name=%s" % name,
    ]
    if run_prefix:
        lines += [
            "# The nodes are reached over real SSH, the TCP connections made inside the lab's controller namespace",
            "# (ProxyCommand). Run Ansible from there, or from this machine's namespace, which stays untouched:",
            "#   %s ansible-playbook -i <this directory> ..." % run_prefix,
        ]
    body = yaml.safe_dump(inventory, indent=2, allow_unicode=True, default_flow_style=False, sort_keys=False)
    return "\n".join(lines) + "\n" + body


def write_inventory(directory: str, text: str, check_mode: bool = False) -> bool:
    """Make ``<directory>/hosts.yml`` hold ``text`` (podnet.cluster's atomic writer; the directory made when
    missing); whether it changed (or, in check mode, would)."""
    path = os.path.join(directory, FILE_NAME)
    if check_mode:
        return read_text(path) != text
    return write_if_changed(path, text)
