# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""One value for each default of the node role: the document's DEFAULTS (what node_state takes for a missing
setting), the role's defaults/main.yml, its meta/argument_specs.yml, and the settings the role hands over
(vars/main.yml) agree key by key."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ansible_collections.podnet.cluster.plugins.plugin_utils.document import DEFAULTS

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


def test_the_role_hands_over_every_setting_from_its_own_variable():
    settings = _yaml("vars", "main.yml")["__podnet_settings"]
    assert sorted(settings) == sorted(DEFAULTS)
    for key, template in settings.items():
        assert re.match(r"^\{\{ podnet_%s( \| bool)? \}\}$" % re.escape(key), template), (key, template)
