"""An http:// BASE_URL: warned about in the admin, campaigns refused unless explicitly allowed (issue 17 item 15);
and the dashboard's "Recent campaigns" in order of activity (item 6)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from campaigns.config import from_env
from campaigns.models import Campaign, Send
from tests.helpers import csrf, fresh


def _send(editor, campaign_id: int):
    token = csrf(editor, f"/admin/campaigns/{campaign_id}")
    return editor.post(f"/admin/campaigns/{campaign_id}/send", data={"csrf_token": token}, follow_redirects=True)


def test_http_base_url_refuses_campaigns_and_says_why(editor, runtime, db_session, make_contacts, make_campaign,
                                                      outbox, run_worker) -> None:
    runtime.settings = runtime.settings.with_overrides({"base_url": "http://news.shop.test"})
    topic, _contacts = make_contacts(3)
    campaign = make_campaign([topic])
    dashboard = editor.get("/admin/").get_data(as_text=True)
    assert 'id="base-url-warning"' in dashboard and "one-click unsubscribe only over https" in dashboard
    page = editor.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Cannot be sent yet" in page and "Campaigns are refused until BASE_URL" in page
    body = _send(editor, campaign.id).get_data(as_text=True)
    assert "Campaigns are refused until BASE_URL" in body
    run_worker()
    assert outbox.list() == [] and fresh(db_session).scalar(select(Send.id)) is None
    assert fresh(db_session).get(Campaign, campaign.id).status == "draft"


def test_allowed_http_base_url_sends_and_still_warns(editor, runtime, db_session, make_contacts, make_campaign,
                                                     outbox, run_worker) -> None:
    runtime.settings = runtime.settings.with_overrides({"base_url": "http://127.0.0.1:5000",
                                                        "allow_http_base_url": True})
    topic, _contacts = make_contacts(2)
    campaign = make_campaign([topic])
    page = editor.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Cannot be sent yet" not in page and "Allowed here" in page
    assert "Sending started" in _send(editor, campaign.id).get_data(as_text=True)
    run_worker()
    assert len(outbox.list()) == 2


def test_https_base_url_shows_no_warning(editor, make_contacts, make_campaign) -> None:
    topic, _ = make_contacts(1)
    campaign = make_campaign([topic])
    assert 'id="base-url-warning"' not in editor.get("/admin/").get_data(as_text=True)
    assert 'id="base-url-warning"' not in editor.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)


@pytest.mark.parametrize(("env", "allowed"), [
    ({}, False),
    ({"RAPPORT_ALLOW_HTTP_BASE_URL": "1"}, True),
    ({"RAPPORT_ALLOW_HTTP_BASE_URL": "no"}, False),
    ({"RAPPORT_DEMO": "1"}, True),
    ({"RAPPORT_ALLOW_INSECURE": "yes"}, True),
])
def test_allowing_http_is_explicit(tmp_path, env: dict, allowed: bool) -> None:
    settings = from_env({"RAPPORT_INSTANCE": str(tmp_path), "SECRET_KEY": "k" * 40, **env})
    assert settings.allow_http_base_url is allowed


def test_recent_campaigns_most_recent_activity_first(editor, db_session, make_contacts, make_campaign) -> None:
    topic, _ = make_contacts(1)
    now = dt.datetime.now(dt.UTC)
    names = {}
    # Created in this order; started (or, for the drafts, created) at these times.
    for name, started, created in [("Sent just now", now - dt.timedelta(minutes=1), now - dt.timedelta(days=20)),
                                   ("Sent last month", now - dt.timedelta(days=30), now - dt.timedelta(days=31)),
                                   ("Draft from yesterday", None, now - dt.timedelta(days=1)),
                                   ("Sent last week", now - dt.timedelta(days=7), now - dt.timedelta(days=8))]:
        c = make_campaign([topic])
        c.name, c.started_at, c.created_at = name, started, created
        names[name] = c.id
    # The first campaign made is the one sent just now: ordering by id would put it last.
    db_session.commit()
    page = editor.get("/admin/").get_data(as_text=True)
    order = sorted(names, key=page.index)
    assert order == ["Sent just now", "Draft from yesterday", "Sent last week", "Sent last month"]
    assert "Most recent activity first" in page
