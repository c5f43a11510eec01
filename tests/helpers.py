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


def export_contacts(client: FlaskClient, run_worker, **filters: str) -> tuple[str, dict]:
    """Start a contact export in the admin, let the worker write it, and return its CSV text and final state."""
    import gzip

    r = client.post("/admin/contacts/exports", data={"csrf_token": csrf(client, "/admin/contacts/export"), **filters})
    assert r.status_code == 303, r.status_code
    page = r.headers["Location"]
    run_worker()
    state = client.get(page + "/status").get_json()
    assert state["state"] == "finished", state
    body = client.get(state["download_url"]).get_data()
    if filters.get("gzip") == "1":
        body = gzip.decompress(body)
    return body.decode("utf-8"), state
