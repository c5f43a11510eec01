"""Double opt-in signup through the real app, Redis, worker and SMTP sink: forms, confirmation, abuse, proof."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from html import unescape

import pytest
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from campaigns.contacts.suppression import suppress
from campaigns.models import AdminUser, Contact, ContactStatus, Event, Signup, SignupStatus, SuppressionReason, Topic
from campaigns.signup import service as signup_service
from mailer.tracking import Purpose
from tests.helpers import fresh

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
CONSENT = "Yes, send me the newsletters I ticked. I can unsubscribe at any time."


@pytest.fixture()
def form(db_session):
    news, tips = Topic(name="Newsletter"), Topic(name="Tips")
    hidden = Topic(name="Internal", public=False)
    db_session.add_all([news, tips, hidden])
    db_session.flush()
    f = signup_service.save_form(db_session, {"name": "Footer", "title": "Get our newsletter",
                                              "consent_text": CONSENT}, [news.id, tips.id])
    db_session.commit()
    return f





def post(client, form, ip: str = "203.0.113.10", **fields):
    data = {"email": "ada@example.com", "first_name": "Ada", "topics": [str(t.id) for t in form.topics],
            "consent": "yes", "consent_version": str(form.consent_version), "website": ""}
    data.update(fields)
    return client.post(f"/signup/{form.public_id}", data=data,
                       headers={"User-Agent": BROWSER}, environ_base={"REMOTE_ADDR": ip})


def confirm_path(outbox, to: str) -> str:
    (msg,) = [outbox.get(m.key) for m in outbox.list() if list(m.recipients) == [to]]
    url = unescape(re.search(r'href="(https://mail\.shop\.test/signup/confirm/[^"]+)"', msg.html).group(1))
    assert url in msg.text
    return "/" + url.split("/", 3)[3]


def contact_of(db_session, email: str) -> Contact | None:
    return fresh(db_session).scalar(select(Contact).where(Contact.email == email))


def test_hosted_page_shows_topics_consent_and_a_hidden_trap(client, form) -> None:
    html = client.get(f"/signup/{form.public_id}").get_data(as_text=True)
    assert "Get our newsletter" in html and CONSENT in html and "Newsletter" in html and "Tips" in html
    assert "Internal" not in html
    assert re.search(r'<div hidden aria-hidden="true">.*name="website"', html)
    assert client.get("/signup/not-a-form").status_code == 404
    assert "not available" in client.get("/signup/" + "x" * 500).get_data(as_text=True)


def test_sign_up_confirm_by_mail_and_become_subscribed(runtime, client, db_session, form, outbox, work) -> None:
    r = post(client, form)
    assert r.status_code == 200 and "Check your inbox" in r.get_data(as_text=True)
    assert contact_of(db_session, "ada@example.com") is None          # the request only queued the work
    work()
    contact = contact_of(db_session, "ada@example.com")
    assert contact.status == ContactStatus.PENDING and contact.first_name == "Ada"
    (msg,) = outbox.list()
    raw = outbox.get(msg.key)
    names = {k for k, _v in raw.headers}
    assert raw.subject == "Please confirm: Get our newsletter" and "List-Unsubscribe" not in names
    assert "DKIM-Signature" in names
    path = confirm_path(outbox, "ada@example.com")
    # A mail scanner (or the person) opening the link changes nothing yet.
    page = client.get(path, headers={"User-Agent": BROWSER})
    assert page.status_code == 200 and "Yes, subscribe me" in page.get_data(as_text=True)
    assert contact_of(db_session, "ada@example.com").status == ContactStatus.PENDING
    done = client.post(path, headers={"User-Agent": BROWSER}, environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert done.status_code == 200 and "You are subscribed" in done.get_data(as_text=True)
    contact = contact_of(db_session, "ada@example.com")
    assert contact.status == ContactStatus.SUBSCRIBED and contact.consent_source == "signup form: Footer"
    assert sorted(s.topic.name for s in contact.subscriptions if s.subscribed) == ["Newsletter", "Tips"]
    (record,) = db_session.scalars(select(Signup))
    assert record.status == SignupStatus.CONFIRMED and record.consent_text == CONSENT and record.consent_version == 1
    assert record.ip == "203.0.113.10" and record.user_agent == BROWSER and record.confirm_ip == "198.51.100.4"
    (event,) = db_session.scalars(select(Event).where(Event.type == "subscribe"))
    assert event.data["form"] == "Footer" and event.data["consent_version"] == 1
    again = client.post(path)
    assert again.status_code == 200 and "Already confirmed" in again.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Event).where(Event.type == "subscribe")) == 1


def test_existing_addresses_get_the_same_answer_and_no_needless_mail(runtime, client, db_session, form, outbox,
                                                                     work, make_contacts) -> None:
    news = next(t for t in form.topics if t.name == "Newsletter")
    make_contacts(1, topic_name="Newsletter", prefix="known")        # known0@example.com, subscribed to Newsletter
    new = post(client, form, email="stranger@example.com", ip="203.0.113.1").get_data(as_text=True)
    same_topics = post(client, form, email="known0@example.com", topics=[str(news.id)], ip="203.0.113.2")
    more_topics = post(client, form, email="known0@example.com", ip="203.0.113.3")
    assert same_topics.get_data(as_text=True) == new == more_topics.get_data(as_text=True)
    work()
    # The stranger and the known contact who asked for a topic they lack get a confirmation; nothing else went out.
    assert sorted(m.recipients[0] for m in outbox.list()) == ["known0@example.com", "stranger@example.com"]
    known = contact_of(db_session, "known0@example.com")
    assert known.status == ContactStatus.SUBSCRIBED and known.first_name != "Ada"     # a stranger cannot rename
    client.post(confirm_path(outbox, "known0@example.com"))
    known = contact_of(db_session, "known0@example.com")
    assert sorted(s.topic.name for s in known.subscriptions if s.subscribed) == ["Newsletter", "Tips"]


def test_suppressed_and_bounced_addresses_are_never_mailed(client, db_session, form, outbox, work,
                                                          make_contacts) -> None:
    _topic, (bounced,) = make_contacts(1, prefix="bounced")
    bounced.status = ContactStatus.BOUNCED
    suppress(db_session, "complainer@example.com", SuppressionReason.COMPLAINT, "test")
    db_session.commit()
    for i, email in enumerate(("bounced0@example.com", "complainer@example.com")):
        assert "Check your inbox" in post(client, form, email=email, ip=f"203.0.113.{i + 20}").get_data(as_text=True)
    work()
    assert outbox.list() == []
    assert contact_of(db_session, "complainer@example.com") is None


def test_honeypot_posts_look_accepted_but_do_nothing(runtime, client, db_session, form, outbox, work) -> None:
    r = post(client, form, website="http://spam.example")
    assert r.status_code == 200 and "Check your inbox" in r.get_data(as_text=True)
    assert runtime.queue.count == 0
    work()
    assert outbox.list() == [] and contact_of(db_session, "ada@example.com") is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"email": "not an address"}, "not a valid email address"),
    ({"email": ""}, "not a valid email address"),
    ({"consent": ""}, "agree to the text"),
    ({"topics": []}, "choose at least one topic"),
    ({"topics": ["999999"]}, "choose topics from the list"),
    ({"topics": ["x" * 30]}, "choose topics from the list"),
    ({"first_name": "a" * 300}, "first name is too long"),
    ({"first_name": "nul\x00"}, "first name is too long"),
])
def test_bad_input_gets_a_clear_message_and_keeps_what_was_typed(runtime, client, form, fields, message) -> None:
    r = post(client, form, **fields)
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and message in unescape(html).lower().replace("choose", "choose")
    assert runtime.queue.count == 0
    if "email" not in fields:
        assert 'value="ada@example.com"' in html


def test_an_old_snippet_must_agree_to_the_new_consent_text(runtime, client, db_session, form, work, outbox) -> None:
    old_version = form.consent_version
    signup_service.save_form(db_session, {"name": "Footer", "title": "Get our newsletter",
                                          "consent_text": CONSENT + " We also send a yearly survey."},
                             [t.id for t in form.topics], form)
    db_session.commit()
    assert form.consent_version == old_version + 1
    r = post(client, form, consent_version=str(old_version))
    assert r.status_code == 422 and "yearly survey" in r.get_data(as_text=True)
    assert "consent text has changed" in r.get_data(as_text=True)
    assert runtime.queue.count == 0
    assert post(client, form).status_code == 200
    work()
    (record,) = fresh(db_session).scalars(select(Signup))
    assert record.consent_version == old_version + 1 and "yearly survey" in record.consent_text


def test_the_embed_snippet_posts_to_the_hosted_endpoint(runtime, client, db_session, form, work, outbox) -> None:
    snippet = signup_service.embed_snippet(form, runtime.settings.base_url)
    action = re.search(r'action="([^"]+)"', snippet).group(1)
    assert action == f"https://mail.shop.test/signup/{form.public_id}" and "csrf" not in snippet
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', snippet))
    fields.update(email="eve@example.com", consent="yes", website="")
    topics = re.findall(r'name="topics" value="(\d+)"', snippet)
    r = client.post("/" + action.split("/", 3)[3], data={**fields, "topics": topics},
                    headers={"Origin": "https://www.shop.example"})
    assert r.status_code == 200 and "Check your inbox" in r.get_data(as_text=True)
    work()
    assert [list(m.recipients) for m in outbox.list()] == [["eve@example.com"]]


def test_rate_limits_per_ip_and_no_mail_storm_to_one_address(runtime, client, db_session, form, outbox,
                                                              work) -> None:
    # One network signing up many addresses is stopped after IP_PER_HOUR posts, with a clear answer.
    for i in range(signup_service.IP_PER_HOUR):
        assert post(client, form, email=f"p{i}@example.com", ip="192.0.2.99").status_code == 200
    limited = post(client, form, email="one-more@example.com", ip="192.0.2.99")
    assert limited.status_code == 429 and "try again later" in limited.get_data(as_text=True).lower()
    assert int(limited.headers["Retry-After"]) > 0
    # Many networks naming one victim's address: the same answer each time, but one mail.
    for i in range(8):
        r = post(client, form, email="victim@example.com", ip=f"198.18.0.{i + 1}")
        assert r.status_code == 200 and "Check your inbox" in r.get_data(as_text=True)
    work()
    assert sum(list(m.recipients) == ["victim@example.com"] for m in outbox.list()) == 1
    assert len(outbox.list()) == signup_service.IP_PER_HOUR + 1


def test_forged_cross_purpose_and_expired_links_get_a_clear_page(runtime, client, db_session, form, outbox,
                                                                 work) -> None:
    post(client, form)
    work()
    path = confirm_path(outbox, "ada@example.com")
    token = path.rsplit("/", 1)[1]
    altered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    for bad in (altered, "x" * 30, "%00" * 5, "A" * 500, runtime.tokens.seal(Purpose.PREFERENCES, 1)):
        for method in (client.get, client.post):
            r = method(f"/signup/confirm/{bad}")
            assert r.status_code == 404 and "not valid" in r.get_data(as_text=True)
    (record,) = db_session.scalars(select(Signup))
    old_day = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=9)).timestamp() // 86400)
    stale = runtime.tokens.seal(Purpose.CONFIRM, record.id, old_day)
    r = client.post(f"/signup/confirm/{stale}")
    assert r.status_code == 410 and "expired" in r.get_data(as_text=True)
    assert f"/signup/{form.public_id}" in r.get_data(as_text=True)          # a way to sign up again
    assert contact_of(db_session, "ada@example.com").status == ContactStatus.PENDING


def test_unconfirmed_signups_expire(runtime, client, db_session, form, outbox, work, make_contacts) -> None:
    _topic, (former,) = make_contacts(1, topic_name="Old", prefix="former")
    former.status = ContactStatus.UNSUBSCRIBED
    db_session.commit()
    post(client, form, email="ada@example.com", ip="203.0.113.1")
    post(client, form, email="former0@example.com", ip="203.0.113.2")
    work()
    paths = {to: confirm_path(outbox, to) for to in ("ada@example.com", "former0@example.com")}
    assert signup_service.expire_pending(fresh(db_session), dt.datetime.now(dt.UTC)) == 0
    later = dt.datetime.now(dt.UTC) + signup_service.SIGNUP_TTL + dt.timedelta(minutes=1)
    assert signup_service.expire_pending(fresh(db_session), later) == 2
    db_session.commit()
    # The address that was only ever pending is gone; the former subscriber stays unsubscribed.
    assert contact_of(db_session, "ada@example.com") is None
    former = contact_of(db_session, "former0@example.com")
    assert former.status == ContactStatus.UNSUBSCRIBED
    (kept,) = db_session.scalars(select(Signup))
    assert kept.status == SignupStatus.EXPIRED
    for path in paths.values():
        r = client.post(path)
        assert r.status_code == 410 and "expired" in r.get_data(as_text=True)
    assert contact_of(db_session, "former0@example.com").status == ContactStatus.UNSUBSCRIBED


def test_an_unsubscribed_contact_can_opt_in_again(client, db_session, form, outbox, work, make_contacts) -> None:
    _topic, (former,) = make_contacts(1, prefix="back")
    former.status = ContactStatus.UNSUBSCRIBED
    db_session.commit()
    post(client, form, email="back0@example.com")
    work()
    assert "You are subscribed" in client.post(confirm_path(outbox, "back0@example.com")).get_data(as_text=True)
    assert contact_of(db_session, "back0@example.com").status == ContactStatus.SUBSCRIBED


@pytest.fixture()
def editor(client, db_session):
    db_session.add(AdminUser(email="ed@shop.test", name="Ed", role="editor",
                             password_hash=generate_password_hash("correct horse battery")))
    db_session.commit()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/login").get_data(True)).group(1)
    client.post("/admin/login", data={"email": "ed@shop.test", "password": "correct horse battery",
                                      "csrf_token": token})
    return client


def _csrf(client, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(True)).group(1)


def test_admin_creates_a_form_copies_the_snippet_and_exports_proof(editor, db_session, outbox, work) -> None:
    news = Topic(name="Newsletter")
    db_session.add(news)
    db_session.commit()
    assert "Sign-up forms" in editor.get("/admin/signups").get_data(True)
    bad = editor.post("/admin/signups/new", data={"csrf_token": _csrf(editor, "/admin/signups/new"), "name": "Shop",
                                                   "consent_text": "", "topics": [str(news.id)], "active": "1"})
    assert bad.status_code == 400 and "consent text" in bad.get_data(True)
    r = editor.post("/admin/signups/new", data={"csrf_token": _csrf(editor, "/admin/signups/new"), "name": "Shop",
                                                 "title": "Join us", "consent_text": "Mail me, =cmd|' /C calc'!A0",
                                                 "topics": [str(news.id)], "active": "1"})
    assert r.status_code == 302
    detail_url = r.headers["Location"]
    page = unescape(editor.get(detail_url).get_data(True))
    form_id = int(detail_url.rstrip("/").rsplit("/", 1)[1])
    public_id = fresh(db_session).scalar(select(signup_service.SignupForm.public_id)
                                         .where(signup_service.SignupForm.id == form_id))
    assert f'action="https://mail.shop.test/signup/{public_id}"' in page and 'name="website"' in page
    # Change the consent text: version 2.
    r = editor.post(f"/admin/signups/{form_id}/edit", data={
        "csrf_token": _csrf(editor, f"/admin/signups/{form_id}/edit"), "name": "Shop", "title": "Join us",
        "consent_text": "Mail me the news, =cmd|' /C calc'!A0", "topics": [str(news.id)], "active": "1"})
    assert r.status_code == 302 and "version 2" in editor.get(r.headers["Location"]).get_data(True)
    editor.post(f"/signup/{public_id}", data={"email": "ada@example.com", "topics": [str(news.id)],
                                              "consent": "yes", "consent_version": "2"},
                headers={"User-Agent": BROWSER})
    work()
    editor.post(confirm_path(outbox, "ada@example.com"))
    export = editor.get(f"/admin/signups/{form_id}/consent.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.get_data(True))))
    assert len(rows) == 1 and rows[0]["email"] == "ada@example.com" and rows[0]["status"] == "confirmed"
    assert rows[0]["consent_version"] == "2" and rows[0]["consent_text"].startswith("Mail me the news")
    assert "=cmd" not in rows[0]["consent_text"][:12] and rows[0]["user_agent"] == BROWSER
    # The contact's GDPR export holds the same proof.
    contact = contact_of(db_session, "ada@example.com")
    data = editor.get(f"/admin/contacts/{contact.id}/gdpr.json").get_json()
    (proof,) = data["signups"]
    assert proof["form"] == "Shop" and proof["consent_version"] == 2 and proof["confirmed_at"]
    # Closing the form closes the hosted page and the endpoint.
    editor.post(f"/admin/signups/{form_id}/edit", data={
        "csrf_token": _csrf(editor, f"/admin/signups/{form_id}/edit"), "name": "Shop", "title": "Join us",
        "consent_text": "Mail me the news, =cmd|' /C calc'!A0", "topics": [str(news.id)]})
    assert editor.get(f"/signup/{public_id}").status_code == 404
