"""Fixtures of the order tests: API keys (from the API tests)."""

from tests.campaigns.api.conftest import make_key  # noqa: F401  (a fixture)
