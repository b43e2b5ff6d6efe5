"""Test support shared by pytest and molecule verifiers (netns testinfra backend, root-namespace snapshot)."""
