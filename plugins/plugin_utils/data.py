# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Plain Python data from what Ansible hands to plugins (tagged strings, lazy containers)."""

from __future__ import annotations

from typing import Any, Mapping


def plain(value: Any) -> Any:
    """Plain Python data: str, int, float, bool, None, dict and list, recursively."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value
