"""Fixtures of the REST API tests: keys with chosen scopes, and a client that sends one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from campaigns.accounts import api_keys
from campaigns.models import ApiScope

ALL_SCOPES = [s.value for s in ApiScope]


@pytest.fixture()
def make_key(db_session) -> Callable[..., str]:
    """Create a key with these scopes (default: all) and return its secret."""

    def make(*scopes: str, name: str = "Shop", rate_limit: int = 10_000) -> str:
        new = api_keys.create_key(db_session, name, scopes or ALL_SCOPES, rate_limit=rate_limit)
        db_session.commit()
        return new.secret

    return make


def auth(secret: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **extra}
