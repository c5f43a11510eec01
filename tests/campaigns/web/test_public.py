"""Recipient pages: one-click unsubscribe (RFC 8058), the unsubscribe page, preferences, open and click."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from campaigns.models import Contact, ContactStatus, Event, Link, Send, Subscription
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose


@pytest.fixture()
def delivered(runtime, db_session, make_contacts, make_campaign, outbox, run_worker):
    topic, contacts = make_contacts(3)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    by_rcpt = {m.recipients[0]: outbox.get(m.key) for m in outbox.list()}
    return campaign, topic, contacts, by_rcpt


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def unsubscribe_url(msg) -> str:
    return path_of(re.search(r"<(https://[^>]+)>", dict(msg.headers)["List-Unsubscribe"]).group(1))


def test_one_click_post_unsubscribes_at_once_without_cookie_or_csrf(client, db_session, delivered) -> None:
    _campaign, _topic, contacts, by_rcpt = delivered
    url = unsubscribe_url(by_rcpt[contacts[0].email])
    r = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "Location" not in r.headers
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.get(Contact, contacts[0].id).status == ContactStatus.UNSUBSCRIBED
    db_session.rollback()   # hold no SQLite lock while the app writes
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200   # idempotent
    assert db_session.scalar(select(Event).where(Event.type == "unsubscribe")).data["source"] == "one-click"
    db_session.rollback()
    # multipart/form-data works too
    url2 = unsubscribe_url(by_rcpt[contacts[1].email])
    r = client.post(url2, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data")
    assert r.status_code == 200
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.get(Contact, contacts[1].id).status == ContactStatus.UNSUBSCRIBED


def test_get_changes_nothing_and_offers_topic_or_all(client, db_session, delivered) -> None:
    _campaign, topic, contacts, by_rcpt = delivered
    url = unsubscribe_url(by_rcpt[contacts[0].email])
    page = client.get(url).get_data(as_text=True)
    assert "Only Newsletter mail" in page and "All mail from us" in page and "/p/" in page
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.get(Contact, contacts[0].id).status == ContactStatus.SUBSCRIBED
    db_session.rollback()
    r = client.post(url, data={"scope": "topics"})
    assert "no longer receive Newsletter mail" in r.get_data(as_text=True)
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.get(Contact, contacts[0].id).status == ContactStatus.SUBSCRIBED
    assert db_session.get(Subscription, (contacts[0].id, topic.id)).subscribed is False


def test_the_unsubscribe_link_of_someone_already_unsubscribed_says_so(client, db_session, delivered) -> None:
    _campaign, _topic, contacts, by_rcpt = delivered
    url = unsubscribe_url(by_rcpt[contacts[0].email])
    assert "<form" in client.get(url).get_data(as_text=True)
    client.post(url, data={"List-Unsubscribe": "One-Click"})
    db_session.rollback()
    page = client.get(url).get_data(as_text=True)
    # Not a second form to press: the page says where they stand and how to come back.
    assert "You are unsubscribed" in page and "<form" not in page and "/p/" in page
    # The imprint names the business once when the postal address starts with its name.
    assert "Green Thumb · Green Thumb" not in page and "Green Thumb, " in page


def test_unsubscribed_contact_gets_nothing_more(runtime, client, db_session, delivered, make_campaign, outbox,
                                               run_worker) -> None:
    _campaign, topic, contacts, by_rcpt = delivered
    client.post(unsubscribe_url(by_rcpt[contacts[0].email]), data={"List-Unsubscribe": "One-Click"})
    second = make_campaign([topic])
    sending.start(db_session, runtime, second)
    db_session.commit()
    run_worker()
    assert [m.recipients[0] for m in outbox.list()].count(contacts[0].email) == 1


def test_forged_or_cross_purpose_tokens_get_a_friendly_404(runtime, client, delivered) -> None:
    _campaign, _topic, contacts, _ = delivered
    open_token = runtime.tokens.seal(Purpose.OPEN, 1)
    for url in ("/u/" + "A" * 30, f"/u/{open_token}", "/c/garbage", f"/c/{open_token}", "/p/x", "/u/" + "x" * 5000):
        r = client.get(url)
        assert r.status_code == 404 and "not valid" in r.get_data(as_text=True), url
    assert client.post("/u/" + "A" * 30, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert client.put(unsubscribe_url_for(runtime, contacts[0].id)).status_code == 405


def unsubscribe_url_for(runtime, contact_id: int) -> str:
    return "/u/" + runtime.tokens.seal(Purpose.UNSUBSCRIBE, contact_id, 0)


def test_click_goes_only_to_the_stored_url_and_is_recorded(runtime, client, db_session, delivered,
                                                           run_worker) -> None:
    campaign, _topic, contacts, by_rcpt = delivered
    html = by_rcpt[contacts[0].email].html
    click = path_of(re.search(r'href="(https://mail\.shop\.test/c/[^"]+)"', html).group(1))
    r = client.get(click)
    assert r.status_code == 302 and r.headers["Location"] == "https://shop.test/guide?a=1&b=2"
    run_worker()
    event = db_session.scalar(select(Event).where(Event.type == "click"))
    assert event.contact_id == contacts[0].id and event.campaign_id == campaign.id
    # A click token naming a link of another campaign is refused.
    send = db_session.scalar(select(Send).where(Send.contact_id == contacts[0].id))
    foreign = Link(campaign_id=campaign.id + 999, url="https://evil.example", position=0)
    assert client.get(f"/c/{runtime.tokens.seal(Purpose.CLICK, send.id, 10**6)}").status_code == 404
    assert foreign.url not in client.get(click).headers["Location"]


def test_open_pixel_records_and_never_caches(client, db_session, delivered, run_worker) -> None:
    _campaign, _topic, contacts, by_rcpt = delivered
    pixel = path_of(re.search(r'src="(https://mail\.shop\.test/o/[^"]+)"', by_rcpt[contacts[1].email].html).group(1))
    r = client.get(pixel, headers={"User-Agent": "Mozilla/5.0"})
    assert r.status_code == 200 and r.mimetype == "image/gif" and "no-store" in r.headers["Cache-Control"]
    run_worker()
    assert db_session.scalar(select(Event).where(Event.type == "open")).contact_id == contacts[1].id
    assert client.get("/o/forged-token-forged-token-1234").status_code == 200   # still a GIF, records nothing


def test_preference_center_updates_topics_and_name(client, db_session, runtime, delivered) -> None:
    _campaign, topic, contacts, _ = delivered
    url = "/p/" + runtime.tokens.seal(Purpose.PREFERENCES, contacts[2].id)
    page = client.get(url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert "Newsletter" in page and contacts[2].email in page and contacts[0].email not in page
    r = client.post(url, data={"csrf_token": token, "first_name": "Renamed", "last_name": "Person"})
    assert "Saved" in r.get_data(as_text=True)
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    contact = db_session.get(Contact, contacts[2].id)
    assert contact.first_name == "Renamed"
    assert db_session.get(Subscription, (contact.id, topic.id)).subscribed is False
    assert client.post(url, data={"first_name": "No CSRF"}).status_code == 400


def test_behind_a_trusted_proxy_the_visitors_address_is_used(settings) -> None:
    from flask import request

    from campaigns.web.app import create_app

    seen = []
    for proxies in (0, 1):
        app = create_app({"SETTINGS": settings.with_overrides({"trusted_proxies": proxies}), "TESTING": True})
        app.add_url_rule("/_ip", "ip", lambda: seen.append(request.remote_addr) or "ok")
        app.test_client().get("/_ip", headers={"X-Forwarded-For": "203.0.113.9"},
                               environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert seen == ["10.0.0.2", "203.0.113.9"]
