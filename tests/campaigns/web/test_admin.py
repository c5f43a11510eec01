"""The minimal admin through HTTP: login, contacts, campaign compose/preview/test/send, outbox."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from campaigns.models import AdminUser, Campaign, CampaignStatus, Contact, Topic


@pytest.fixture()
def admin_user(db_session):
    user = AdminUser(email="marketer@shop.test", name="Mara", role="editor",
                     password_hash=generate_password_hash("correct horse battery"))
    db_session.add(user)
    db_session.commit()
    return user


def csrf(client, url: str) -> str:
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture()
def logged_in(client, admin_user):
    token = csrf(client, "/admin/login")
    r = client.post("/admin/login", data={"email": "marketer@shop.test", "password": "correct horse battery",
                                          "csrf_token": token})
    assert r.status_code == 302
    return client


def test_pages_need_login_and_wrong_password_is_refused(client, admin_user) -> None:
    assert client.get("/admin/contacts").status_code == 302
    token = csrf(client, "/admin/login")
    r = client.post("/admin/login", data={"email": "marketer@shop.test", "password": "nope", "csrf_token": token})
    assert "Wrong email or password" in r.get_data(as_text=True)
    assert client.get("/admin/contacts").status_code == 302


def test_forms_without_csrf_token_are_refused(logged_in) -> None:
    r = logged_in.post("/admin/topics", data={"name": "Sneaky"})
    assert r.status_code == 400


def test_login_does_not_redirect_off_site(client, admin_user) -> None:
    token = csrf(client, "/admin/login")
    r = client.post("/admin/login?next=//evil.example/x", data={
        "email": "marketer@shop.test", "password": "correct horse battery", "csrf_token": token})
    assert r.headers["Location"] == "/admin/"


def test_contact_with_invalid_email_is_rejected_with_a_message(logged_in, db_session) -> None:
    token = csrf(logged_in, "/admin/contacts/new")
    r = logged_in.post("/admin/contacts/new", data={"email": "not-an-address", "first_name": "Kim",
                                                    "csrf_token": token})
    assert r.status_code == 400 and "not a valid email address" in r.get_data(as_text=True)
    assert 'value="Kim"' in r.get_data(as_text=True)           # what was typed is kept
    assert db_session.scalar(select(Contact)) is None
    r = logged_in.post("/admin/contacts/new", data={"email": "Kim@Example.COM", "first_name": "Kim",
                                                    "csrf_token": token})
    assert r.status_code == 302
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.scalar(select(Contact.email)) == "kim@example.com"
    r = logged_in.post("/admin/contacts/new", data={"email": "KIM@example.com", "csrf_token": token})
    assert "already in the contact list" in r.get_data(as_text=True)


def test_compose_preview_test_send_and_outbox(logged_in, db_session, make_contacts, outbox, run_worker) -> None:
    topic, _ = make_contacts(3)
    token = csrf(logged_in, "/admin/campaigns/new")
    bad = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n<mj-text>Hi</mj-column>\n</mj-section></mj-body></mjml>"
    r = logged_in.post("/admin/campaigns/new", data={"name": "Spring", "kind": "nurture", "subject": "Hello",
                                                     "mjml": bad, "topics": [topic.id], "csrf_token": token},
                       follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "line 5" in page and "cannot be sent" in page
    campaign = db_session.scalar(select(Campaign))
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token}, follow_redirects=True)
    assert "line 5" in r.get_data(as_text=True)
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT

    good = bad.replace("<mj-text>Hi</mj-column>", "<mj-text>Hi {{ contact.first_name }}</mj-text></mj-column>")
    logged_in.post(f"/admin/campaigns/{campaign.id}/edit", data={
        "name": "Spring", "kind": "nurture", "subject": "Hello {{ contact.first_name }}", "mjml": good,
        "topics": [topic.id], "csrf_token": token})
    preview = logged_in.get(f"/admin/campaigns/{campaign.id}/preview")
    assert "sandbox" in preview.headers["Content-Security-Policy"]
    assert "Hi Zoë0" in preview.get_data(as_text=True)
    page = logged_in.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert re.search(r'<iframe[^>]*sandbox', page)

    r = logged_in.post(f"/admin/campaigns/{campaign.id}/test", data={"addresses": "boss@example.com",
                                                                     "csrf_token": token}, follow_redirects=True)
    assert "Test sent to boss@example.com" in r.get_data(as_text=True)
    entry = outbox.list()[0]
    assert entry.subject.startswith("[Test] Hello") and entry.recipients == ("boss@example.com",)

    logged_in.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token})
    run_worker()
    progress = logged_in.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["sent"] == 3 and progress["remaining"] == 0 and progress["status"] == "finished"

    listing = logged_in.get("/admin/outbox").get_data(as_text=True)
    assert listing.count("Hello Zoë0") == 1 and "4 captured" in listing
    key = outbox.list()[0].key
    shown = logged_in.get(f"/admin/outbox/{key}").get_data(as_text=True)
    assert "DKIM-Signature" in shown and "List-Unsubscribe-Post" in shown
    body = logged_in.get(f"/admin/outbox/{key}/body")
    assert "sandbox" in body.headers["Content-Security-Policy"] and "Hi " in body.get_data(as_text=True)
    assert logged_in.get("/admin/outbox/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_viewer_cannot_change_campaigns(client, db_session) -> None:
    db_session.add(AdminUser(email="v@shop.test", name="Vic", role="viewer",
                             password_hash=generate_password_hash("viewer password")))
    db_session.add(Topic(name="T"))
    db_session.commit()
    token = csrf(client, "/admin/login")
    client.post("/admin/login", data={"email": "v@shop.test", "password": "viewer password", "csrf_token": token})
    assert client.get("/admin/contacts").status_code == 200
    assert client.get("/admin/campaigns/new").status_code == 403
    token = csrf(client, "/admin/contacts")
    assert client.post("/admin/campaigns/preview", data={"mjml": "x", "csrf_token": token}).status_code == 403
    campaign = Campaign(name="Seen", subject="S", mjml="<mjml><mj-body></mj-body></mjml>")
    db_session.add(campaign)
    db_session.commit()
    page = client.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Seen" in page and "Send test" not in page and "Send now" not in page      # reports, not buttons
    assert client.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token}).status_code == 403
