# SPDX-License-Identifier: Apache-2.0
"""The router fabric on this scenario's lab (the tests live in tests/lib/molecule_router_tests.py)."""

# collected by pytest from here
from lib.molecule_router_tests import (  # noqa: F401 pylint: disable=unused-import
    test_nodes_hold_no_peer_routes_and_forward,
    test_the_router_routes_every_pod_subnet_via_its_node,
    test_verify_playbook_passes,
)
