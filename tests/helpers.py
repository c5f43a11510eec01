"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy.orm import Session


def fresh(session: Session) -> Session:
    """End the test session's transaction and forget loaded rows, so the next read sees what the app and the
    worker committed (and, on SQLite, the test holds no lock they wait for)."""
    session.rollback()
    session.expire_all()
    return session


def csrf(client: FlaskClient, url: str) -> str:
    """The CSRF token of the form on the admin page at url."""
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
