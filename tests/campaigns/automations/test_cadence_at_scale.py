"""The cadence report on a big list (issue 16): counting the quiet contacts is a pass over every contact, so a job
counts it and the page shows the figure with its age; the page of contacts itself stays live."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import update

from campaigns.models import Contact


@pytest.fixture()
def big(runtime):
    """Treat the list as big: the count goes through its background job."""
    runtime.settings = dataclasses.replace(runtime.settings, live_count_limit=0)
    return runtime


def test_the_quiet_count_comes_from_a_job_with_its_age(big, editor, db_session, make_contacts, work) -> None:
    _topic, contacts = make_contacts(3)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    db_session.execute(update(Contact).where(Contact.id.in_([c.id for c in contacts[:2]]))
                       .values(created_at=long_ago))
    db_session.commit()
    page = editor.get("/admin/automations/cadence?days=30").get_data(as_text=True)
    assert "being counted in the background" in page and 'http-equiv="refresh"' in page
    assert contacts[0].email in page and contacts[1].email in page and contacts[2].email not in page

    work()
    page = editor.get("/admin/automations/cadence?days=30").get_data(as_text=True)
    assert "<strong>2</strong> subscribed contacts got no mail in the last 30 days" in page
    assert "as of a few seconds ago" in page and 'http-equiv="refresh"' not in page
    assert "being counted" in editor.get("/admin/automations/cadence?days=60").get_data(as_text=True)
