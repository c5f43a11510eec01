"""The preference center: topics, how often, a pause, name, resubscribe; CSRF, accessibility, consent history."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from campaigns.feedback import preferences as feedback
from campaigns.models import Contact, ContactStatus, Event, Frequency, Subscription, Topic
from mailer.tracking import Purpose
from tests.helpers import fresh


@pytest.fixture()
def prefs(runtime, client, db_session, make_contacts):
    topic, (contact,) = make_contacts(1)
    tips = Topic(name="Garden tips", description="Monthly advice")
    db_session.add(tips)
    db_session.add(Topic(name="Internal", public=False))
    db_session.commit()
    url = "/p/" + runtime.tokens.seal(Purpose.PREFERENCES, contact.id)
    return url, contact, topic, tips


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)



def test_page_is_accessible_and_mobile_friendly(client, prefs) -> None:
    url, contact, topic, tips = prefs
    page = client.get(url).get_data(as_text=True)
    assert '<html lang="en">' in page and 'name="viewport"' in page
    for field in ("first_name", "last_name", "pause"):          # every field has a label
        assert f'<label for="{field}">' in page and f'id="{field}"' in page
    assert page.count("<legend>") == 5 and "Internal" not in page   # hidden topics are not offered
    assert "Send me no letters or cards by post" in page
    assert "Every mail" in page and "weekly digest" in page and "monthly digest" in page
    assert "For 4 weeks" in page and contact.email in page


def test_saving_topics_frequency_pause_and_name_with_confirmation_and_history(client, db_session, prefs) -> None:
    url, contact, topic, tips = prefs
    page = client.get(url).get_data(as_text=True)
    r = client.post(url, data={"csrf_token": csrf_of(page), "topics": [str(tips.id)], "frequency": "weekly",
                               "pause": "4", "first_name": "Ada", "last_name": "Lovelace"})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "Saved" in body and 'role="status"' in body
    assert "You now receive Garden tips" in body and "You no longer receive Newsletter" in body
    assert "weekly digest" in body and "No mail until" in body
    db = fresh(db_session)
    c = db.get(Contact, contact.id)
    assert (c.first_name, c.last_name, c.frequency) == ("Ada", "Lovelace", Frequency.WEEKLY)
    assert c.paused_until - dt.datetime.now(dt.UTC) > dt.timedelta(days=27)
    assert db.get(Subscription, (c.id, topic.id)).subscribed is False
    assert db.get(Subscription, (c.id, tips.id)).subscribed is True
    (ev,) = db.scalars(select(Event).where(Event.type == "preferences"))
    assert ev.data["topics_on"] == ["Garden tips"] and ev.data["frequency"] == ["every", "weekly"]
    assert "Your consent history" in body and "preferences (preference center)" in body
    db.rollback()   # let go of the read snapshot (and SQLite lock) before the app writes again
    # The pause is shown and can be ended.
    page = client.get(url).get_data(as_text=True)
    assert "paused until" in page
    body = client.post(url, data={"csrf_token": csrf_of(page), "topics": [str(tips.id)], "frequency": "weekly",
                                  "pause": "0", "first_name": "Ada", "last_name": "Lovelace"}).get_data(True)
    assert "Your pause has ended" in body
    assert fresh(db_session).get(Contact, contact.id).paused_until is None


def test_resubscribe_is_recorded_as_consent(client, db_session, prefs) -> None:
    url, contact, topic, _tips = prefs
    db_session.get(Contact, contact.id).status = ContactStatus.UNSUBSCRIBED
    db_session.commit()
    page = client.get(url).get_data(as_text=True)
    assert "Subscribe me again" in page
    body = client.post(url, data={"csrf_token": csrf_of(page), "topics": [str(topic.id)], "resubscribe": "1",
                                  "first_name": contact.first_name, "last_name": "Tester"}).get_data(True)
    assert "You are subscribed again" in body
    c = fresh(db_session).get(Contact, contact.id)
    assert c.status == ContactStatus.SUBSCRIBED and c.consent_source == "preference center"
    assert db_session.scalar(select(Event).where(Event.type == "resubscribe")) is not None


def test_bad_input_is_refused_kindly_and_changes_nothing(client, db_session, prefs) -> None:
    url, contact, _topic, _tips = prefs
    assert client.post(url, data={"first_name": "No CSRF"}).status_code == 400
    page = client.get(url).get_data(as_text=True)
    for bad in ({"frequency": "hourly"}, {"pause": "3"}, {"pause": "-1"}):
        r = client.post(url, data={"csrf_token": csrf_of(page), "first_name": "Changed", **bad})
        assert r.status_code == 422 and 'role="alert"' in r.get_data(True), bad
    assert fresh(db_session).get(Contact, contact.id).first_name != "Changed"


def test_pause_and_frequency_rules_for_the_send_path(db_session, make_contacts) -> None:
    _topic, (c,) = make_contacts(1)
    now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    assert feedback.may_receive(c, "nurture", now)
    c.paused_until = now + dt.timedelta(weeks=2)
    assert feedback.is_paused(c, now) and not feedback.may_receive(c, "marketing", now)
    assert feedback.may_receive(c, "transactional", now)       # receipts still arrive
    assert not feedback.is_paused(c, now + dt.timedelta(weeks=3))
    c.paused_until = None
    c.frequency = Frequency.WEEKLY
    c.last_sent_at = now - dt.timedelta(days=3)
    assert not feedback.may_receive(c, "nurture", now)
    assert feedback.may_receive(c, "nurture", now + dt.timedelta(days=4))
    c.frequency = Frequency.MONTHLY
    assert not feedback.may_receive(c, "nurture", now + dt.timedelta(days=20))


def test_saving_over_https_as_a_browser_would(client, db_session, prefs) -> None:
    """Over HTTPS the CSRF check wants a same-origin Referer; the page's Referrer-Policy must let browsers send it."""
    url, contact, topic, tips = prefs
    r = client.get(url, base_url="https://rapport.example")
    assert r.headers["Referrer-Policy"] in ("same-origin", "strict-origin", "strict-origin-when-cross-origin")
    data = {"csrf_token": csrf_of(r.get_data(as_text=True)), "topics": [str(tips.id)], "frequency": "every",
            "pause": "0", "first_name": "Ada", "last_name": ""}
    # A browser under that policy sends the page's own URL as Referer to the same origin.
    ok = client.post(url, base_url="https://rapport.example", data=data,
                     headers={"Referer": f"https://rapport.example{url}"})
    assert ok.status_code == 200 and "Saved" in ok.get_data(as_text=True)
    # Without it (what "no-referrer" made browsers do) the post is refused, kindly.
    refused = client.post(url, base_url="https://rapport.example", data=data)
    assert refused.status_code == 400 and "Traceback" not in refused.get_data(as_text=True)
