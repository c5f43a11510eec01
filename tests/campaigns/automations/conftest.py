"""Fixtures of the automation tests: an API key for the shop that pushes orders."""

from __future__ import annotations

import pytest

from campaigns.accounts import api_keys
from campaigns.models import ApiScope


@pytest.fixture()
def api_key(db_session) -> str:
    """A key with every scope (the shop's), committed; its secret."""
    new = api_keys.create_key(db_session, "Shop", [s.value for s in ApiScope], rate_limit=10_000)
    db_session.commit()
    return new.secret
