# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Documentation shared by the node-side modules that read, diff and write behind one check-mode gate."""

from __future__ import annotations


class ModuleDocFragment:
    """C(extends_documentation_fragment: [podnet.cluster.attributes])."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
    description: Reads the node's state and reports the whole change it would make; writes nothing.
  diff_mode:
    support: full
    description: Before and after texts of what it owns, returned only with C(--diff).
  platform:
    support: full
    platforms: posix
    description: Linux hosts; the module uses only the Python standard library on the target.
"""
