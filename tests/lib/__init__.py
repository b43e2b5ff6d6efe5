# SPDX-License-Identifier: Apache-2.0
"""Test support shared by pytest and molecule verifiers (netns testinfra backend, root-namespace snapshot)."""
