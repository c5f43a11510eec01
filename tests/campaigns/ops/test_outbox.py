"""The admin never fires tracking: viewing a sent message in the Outbox records no open and no click."""

from __future__ import annotations

import re
from html import unescape

from sqlalchemy import func, select

from campaigns.models import Event, Send
from campaigns.sending import lifecycle as sending
from campaigns.sending import test_sends
from mailer.tracking import Purpose
from tests.campaigns.web.test_admin import admin_user, logged_in  # noqa: F401 - fixtures

BASE = "https://mail.shop.test"


def _follow_everything(client, html: str) -> list[str]:
    """Fetch what a browser showing html would fetch or follow on our own site; returns the paths."""
    paths = []
    for url in re.findall(r"""(?:src|href)=["']([^"']+)""", html):
        url = unescape(url)
        if url.startswith(BASE + "/"):
            paths.append("/" + url.split("/", 3)[3])
            client.get(paths[-1])
    return paths


def _events(db_session) -> int:
    db_session.rollback()
    return db_session.scalar(select(func.count()).select_from(Event).where(Event.type.in_(("open", "click"))))


def test_viewing_sent_and_test_messages_in_the_outbox_records_nothing(
        runtime, logged_in, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:  # noqa: F811
    topic, contacts = make_contacts(2)
    campaign = make_campaign([topic])
    test_sends.send_test(runtime, campaign.id, ["tester@example.com"], as_contact_id=contacts[0].id)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    entries = outbox.list()
    assert len(entries) == 3
    page = logged_in.get("/admin/outbox").get_data(as_text=True)
    for entry in entries:
        assert f"/admin/outbox/{entry.key}" in page
        assert logged_in.get(f"/admin/outbox/{entry.key}").status_code == 200
        body = logged_in.get(f"/admin/outbox/{entry.key}/body").get_data(as_text=True)
        sent = outbox.get(entry.key).html
        assert f"{BASE}/o/" in sent and f"{BASE}/c/" in sent           # the mail itself is tracked...
        assert f"{BASE}/o/" not in body and f"{BASE}/c/" not in body   # ...the admin's view of it is not
        assert 'href="https://shop.test/guide?a=1&amp;b=2"' in body     # links go straight to their target
        _follow_everything(logged_in, body)
    db_session.rollback()   # hold no read snapshot while the worker writes whatever hits were queued
    run_worker()
    assert _events(db_session) == 0

    # The same links, followed from the mail by its recipient, are recorded: the test above can fail.
    mail = outbox.get(next(e.key for e in entries if e.recipients == (contacts[1].email,))).html
    assert {p[:3] for p in _follow_everything(logged_in, mail)} >= {"/o/", "/c/"}
    db_session.rollback()
    run_worker()
    assert _events(db_session) >= 2


def test_the_web_version_opened_from_the_admin_records_nothing(
        runtime, logged_in, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:  # noqa: F811
    topic, contacts = make_contacts(1)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    send = db_session.scalar(select(Send).where(Send.campaign_id == campaign.id))
    token = runtime.tokens.seal(Purpose.WEB, send.id)
    public = logged_in.get(f"/m/{token}").get_data(as_text=True)
    assert f"{BASE}/c/" in public                                   # the recipient's web version is tracked
    # ...and is a proper page: a main landmark with the subject as its level-one heading.
    assert re.search(rf"<body[^>]*><main><h1 [^>]*>Hi {contacts[0].first_name}, our news</h1>", public)
    body = logged_in.get(f"/admin/outbox/web/{token}")
    assert body.status_code == 200 and "sandbox" in body.headers["Content-Security-Policy"]
    html = body.get_data(as_text=True)
    assert f"{BASE}/c/" not in html and "https://shop.test/guide" in html
    _follow_everything(logged_in, html)
    db_session.rollback()
    run_worker()
    assert _events(db_session) == 0
    assert logged_in.get("/admin/outbox/web/not-a-token").status_code == 404


def test_web_version_links_in_a_message_lead_to_the_admin_copy() -> None:
    from campaigns.composing.inspection import BLANK_PIXEL, without_tracking
    from mailer.tracking import TokenCodec

    tokens = TokenCodec("k" * 40)
    html = (f'<a href="{BASE}/m/WEBTOKEN">Read it</a><img src="{BASE}/o/x"><a href="{BASE}/u/y">Unsubscribe</a>'
            f'<a href="{BASE}/c/forged">broken</a>')
    out = without_tracking(html, BASE, tokens, lambda s, link: "never", lambda t: f"/admin/outbox/web/{t}")
    assert '<a href="/admin/outbox/web/WEBTOKEN">' in out and f'src="{BLANK_PIXEL}"' in out
    assert f'href="{BASE}/u/y"' in out and 'href="#"' in out


def test_outbox_search_finds_recipients_subjects_campaigns_and_test_sends(
        runtime, logged_in, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:  # noqa: F811
    topic, contacts = make_contacts(3)
    campaign = make_campaign([topic])
    campaign.name = "Autumn news"
    db_session.commit()
    test_sends.send_test(runtime, campaign.id, ["tester@example.com"], as_contact_id=contacts[0].id)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    other = make_campaign([topic], subject="Winter sale")
    other.name = "Winter"
    db_session.commit()
    sending.start(db_session, runtime, other)
    db_session.commit()
    run_worker()

    def rows(**args) -> list[str]:
        page = logged_in.get("/admin/outbox", query_string=args).get_data(as_text=True)
        return re.findall(r"<tr><td>\d{4}-.*?</tr>", page, re.S)

    assert len(rows()) == 7
    (test,) = rows(kind="test")                     # after the real send the test is still one click away
    assert "tester@example.com" in test and "badge warn" in test and "Autumn news" in test
    assert len(rows(q=contacts[1].email.upper())) == 2
    assert len(rows(q="winter")) == 3              # the subject (and the campaign's name)
    assert len(rows(q="autumn")) == 4              # by campaign name: three recipients and the test
    assert len(rows(campaign=str(other.id))) == 3
    assert len(rows(campaign=str(campaign.id), kind="campaign")) == 3
    assert rows(q="nobody-at-all") == [] and "No message matches." in logged_in.get(
        "/admin/outbox?q=nobody-at-all").get_data(as_text=True)
    assert logged_in.get("/admin/outbox?before=../etc").status_code == 404
