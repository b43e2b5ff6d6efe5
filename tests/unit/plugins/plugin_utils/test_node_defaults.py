# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""One value for each default of the node role: the document's DEFAULTS (what node_state takes for a missing
setting), the role's defaults/main.yml and its meta/argument_specs.yml agree key by key, and the booleans among the
settings are the argument spec's."""

from __future__ import annotations

from pathlib import Path

import yaml

from ansible_collections.podnet.cluster.plugins.plugin_utils.document import BOOLEAN_SETTINGS, DEFAULTS, as_read

ROLE = Path(__file__).resolve().parents[4] / "roles" / "node"


def _yaml(*parts):
    return yaml.safe_load(ROLE.joinpath(*parts).read_text())


def test_role_defaults_equal_the_documents_defaults():
    defaults = _yaml("defaults", "main.yml")
    differ = {key: (defaults.get("podnet_" + key, "(missing)"), value) for key, value in DEFAULTS.items()
              if defaults.get("podnet_" + key, "(missing)") != value}
    assert not differ, "roles/node/defaults/main.yml vs document.DEFAULTS: %s" % differ


def test_argument_spec_defaults_equal_the_role_defaults():
    defaults = _yaml("defaults", "main.yml")
    options = _yaml("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    differ = {name: (option["default"], defaults.get(name, "(missing)")) for name, option in options.items()
              if "default" in option and defaults.get(name, "(missing)") != option["default"]}
    assert not differ, "meta/argument_specs.yml vs defaults/main.yml: %s" % differ


def test_the_boolean_settings_are_the_roles_boolean_variables():
    """The action reads the host's podnet_<setting> variables itself; the booleans among them are those the role's
    argument spec types as booleans."""
    options = _yaml("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    typed = sorted(name[len("podnet_"):] for name, option in options.items()
                   if option.get("type") == "bool" and name[len("podnet_"):] in DEFAULTS)
    assert typed == sorted(BOOLEAN_SETTINGS), (typed, BOOLEAN_SETTINGS)
    assert all("podnet_" + key in options for key in DEFAULTS), sorted(set(DEFAULTS) - {o[7:] for o in options})


def test_the_booleans_are_read_as_the_role_reads_them_and_nothing_else_is_touched():
    given = {"masquerade": "no", "units": "Yes", "allow_readdress": 1, "l2_bridge_allow_dynamic_address": "on",
             "vxlan_direct_routing": "maybe", "bridge": "yes", "vxlan_tx_checksum_offload": "off", "bridge_mtu": 0}
    assert as_read(given) == {"masquerade": False, "units": True, "allow_readdress": True,
                              "l2_bridge_allow_dynamic_address": True, "vxlan_direct_routing": False, "bridge": "yes",
                              "vxlan_tx_checksum_offload": "off", "bridge_mtu": 0}
