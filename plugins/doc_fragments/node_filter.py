# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Options shared by the filters that compute one node's configuration from the cluster plan."""

from __future__ import annotations


class ModuleDocFragment:
    """C(extends_documentation_fragment: [podnet.cluster.node_filter])."""

    DOCUMENTATION = r"""
options:
  _input:
    description: The cluster plan (C(podnet_plan)).
    type: dict
    required: true
  hostname:
    description: The node (inventory hostname).
    type: str
    required: true
"""
