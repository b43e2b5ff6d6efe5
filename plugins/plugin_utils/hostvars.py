# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Another host's variables, as a task that runs once for the whole play (run_once, on the controller) can know
them: the values it sees itself hold this host's inventory, the play's and the role's variables; ``hostvars`` of
another host hold that host's inventory (host and group variables, extra vars) but neither play nor role
variables. The checks that validate every node in one task (node_state's validate, the plan role's variables)
take each host's values from here.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping


def other_host_values(seen: Mapping[str, Any], mine: Mapping[str, Any], theirs: Mapping[str, Any],
                      defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """The values of another host, by variable name.

    ``seen``: the values the task sees (this host's); ``mine`` and ``theirs``: the variables this host's and the
    other host's hostvars hold (only those set); ``defaults``: the role's defaults (a variable without one is unset).

    - the other host's inventory sets the variable: its value;
    - this host's inventory sets it and the task sees that value: the value is this host's own (a host variable,
      or a group variable of a group the other host is not in), so the other host has the role's default;
    - otherwise (a play or role variable, or this host's value overridden by the play): the value the task sees.
    """
    values: Dict[str, Any] = {}
    for name in set(seen) | set(defaults) | set(theirs):
        if name in theirs:
            values[name] = theirs[name]
        elif name in mine and name in seen and mine[name] == seen[name]:
            if name in defaults:
                values[name] = defaults[name]
        elif name in seen:
            values[name] = seen[name]
        elif name in defaults:
            values[name] = defaults[name]
    return values
