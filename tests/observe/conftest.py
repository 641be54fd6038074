"""Fixtures of the observer tests; the helpers live in observe_helpers.py (a unique module
name: test modules import it, and `conftest` is a different module in every directory)."""

from observe_helpers import client, observed  # noqa: F401  (fixtures)
