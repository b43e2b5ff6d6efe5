# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The plan action's copy of the plan role's argument spec agrees with the role's meta/argument_specs.yml and
defaults/main.yml, and validates as Ansible's own validation task would."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.podnet.cluster.plugins.plugin_utils.plan_role_spec import PLAN_ROLE_OPTIONS

ROLE = Path(__file__).resolve().parents[4] / "roles" / "plan"
DOC_ONLY = ("description", "short_description", "version_added")


def _role_options():
    return yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


def test_spec_equals_the_roles_argument_specs():
    documented = {name: {k: v for k, v in option.items() if k not in DOC_ONLY}
                  for name, option in _role_options().items()}
    assert documented == PLAN_ROLE_OPTIONS


def test_every_option_is_documented():
    assert all(option.get("description") for option in _role_options().values())


def test_role_defaults_agree_with_the_spec():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    for name, option in PLAN_ROLE_OPTIONS.items():
        if "default" in option:
            assert defaults[name] == option["default"], name
    # the public variables the role sets are all in the spec; internal ones (__podnet_*) are not
    assert sorted(k for k in defaults if not k.startswith("__")) == sorted(
        k for k in defaults if k in PLAN_ROLE_OPTIONS)


@pytest.mark.parametrize("args, needle", [
    ({"podnet_node_prefix_ipv4": "wide"}, "podnet_node_prefix_ipv4"),
    ({"podnet_cluster_cidrs": {"a": 1}}, "podnet_cluster_cidrs"),
    ({"podnet_plan_prune": "perhaps"}, "podnet_plan_prune"),
])
def test_spec_refuses_bad_types(args, needle):
    errors = ArgumentSpecValidator(PLAN_ROLE_OPTIONS).validate(args, validate_role_argument_spec=True).error_messages
    assert errors and needle in " ".join(errors)


def test_spec_accepts_the_defaults():
    args = {name: option["default"] for name, option in PLAN_ROLE_OPTIONS.items() if "default" in option}
    args["podnet_state_file"] = "/tmp/state.yml"
    assert not ArgumentSpecValidator(PLAN_ROLE_OPTIONS).validate(args, validate_role_argument_spec=True).error_messages
