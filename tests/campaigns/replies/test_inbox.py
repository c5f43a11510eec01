"""The Replies inbox in the admin: listing and filters, one reply (sanitised HTML in a sandboxed frame), status
changes, and an answer written here that reaches the customer threaded under their message."""

from __future__ import annotations

from email.utils import parseaddr

from sqlalchemy import select

from campaigns.feedback import ingest
from campaigns.models import MailState, Reply
from campaigns.replies import mail as reply_mail
from tests.campaigns.api.conftest import auth
from tests.campaigns.replies.conftest import answer, header
from tests.helpers import csrf, fresh


def _receive(runtime, db_session, msg, body: str, **kw) -> Reply:
    out = ingest.ingest_message(db_session, runtime.tokens, answer(msg, body, **kw))
    db_session.commit()
    assert out.kind in ("reply", "auto_reply")
    return fresh(db_session).get(Reply, int(out.detail))


def test_inbox_lists_filters_and_shows_a_reply_safely(editor, runtime, db_session, sent) -> None:
    campaign, contacts, by_rcpt = sent
    first = _receive(runtime, db_session, by_rcpt[contacts[0].email], "Do you ship to Austria?",
                     html='<p>Do you ship to <b>Austria</b>?</p><script>alert("x")</script>')
    _receive(runtime, db_session, by_rcpt[contacts[1].email], "I am away.", extra={"Auto-Submitted": "auto-replied"})
    page = editor.get("/admin/replies").get_data(as_text=True)
    assert "Do you ship to Austria?" in page and "I am away." not in page
    assert "Open (1)" in page and "Auto-replies (1)" in page
    assert "I am away." in editor.get("/admin/replies?view=auto").get_data(as_text=True)
    assert "Austria" in editor.get(f"/admin/replies?campaign={campaign.id}").get_data(as_text=True)
    assert "Austria" not in editor.get(f"/admin/replies?campaign={campaign.id + 99}").get_data(as_text=True)
    owner_id = contacts[0].owner_id
    assert "Austria" in editor.get(f"/admin/replies?owner={owner_id}").get_data(as_text=True)
    assert "Austria" not in editor.get(f"/admin/replies?owner={owner_id + 99}").get_data(as_text=True)
    assert editor.get("/admin/replies?view=bogus&campaign=x&before=-1").status_code == 200
    detail = editor.get(f"/admin/replies/{first.id}").get_data(as_text=True)
    assert 'sandbox=""' in detail and "&lt;b&gt;Austria&lt;/b&gt;" in detail
    assert "<script>" not in detail and "alert" not in detail
    assert editor.get("/admin/replies/999999").status_code == 404
    # The contact page's timeline links the reply.
    assert f"/admin/replies/{first.id}" in editor.get(f"/admin/contacts/{contacts[0].id}").get_data(as_text=True)
    # Archive and reopen.
    token = csrf(editor, f"/admin/replies/{first.id}")
    r = editor.post(f"/admin/replies/{first.id}/status", data={"status": "archived", "csrf_token": token})
    assert r.status_code == 302 and fresh(db_session).get(Reply, first.id).status == "archived"
    editor.post(f"/admin/replies/{first.id}/status", data={"status": "nonsense", "csrf_token": token})
    assert fresh(db_session).get(Reply, first.id).status == "archived"


def test_an_answer_from_the_admin_is_threaded_and_comes_from_the_owner(editor, runtime, db_session, sent, outbox,
                                                                      work) -> None:
    _campaign, contacts, by_rcpt = sent
    msg = by_rcpt[contacts[0].email]
    reply = _receive(runtime, db_session, msg, "Can I still return the boots?")
    assert reply_mail.send_due(runtime) == 1   # the forward to the owner (the ingest commands do this at once)
    before = {m.key for m in outbox.list()}
    token = csrf(editor, f"/admin/replies/{reply.id}")
    bad = editor.post(f"/admin/replies/{reply.id}/answer", data={"sender_id": contacts[0].owner_id, "message": " ",
                                                                 "csrf_token": token}, follow_redirects=True)
    assert "write the answer" in bad.get_data(as_text=True)
    r = editor.post(f"/admin/replies/{reply.id}/answer", data={
        "sender_id": contacts[0].owner_id, "message": "Yes, within 30 days.", "csrf_token": token})
    assert r.status_code == 302
    work()
    new = [outbox.get(m.key) for m in outbox.list() if m.key not in before]
    assert [m.recipients for m in new] == [(contacts[0].email,)]
    mail = new[0]
    assert parseaddr(mail.from_) == ("Olivia Owner", "olivia@shop.test")
    assert header(mail, "In-Reply-To") == reply.message_id
    assert header(mail, "References").split() == [header(msg, "Message-ID"), reply.message_id]
    assert mail.subject.startswith("Re: ") and "Yes, within 30 days." in mail.text
    assert "> Can I still return the boots?" in mail.text
    assert header(mail, "DKIM-Signature")
    row = fresh(db_session).get(Reply, reply.id)
    assert (row.answer_state, row.status, row.answered_by) == (MailState.SENT, "answered", "Mara Klein")
    # A second answer is refused (write from the contact's page instead).
    again = editor.post(f"/admin/replies/{reply.id}/answer", data={
        "sender_id": contacts[0].owner_id, "message": "And again", "csrf_token": token}, follow_redirects=True)
    assert "answered already" in again.get_data(as_text=True)
    assert fresh(db_session).scalar(select(Reply.answer_text).where(Reply.id == reply.id)) == "Yes, within 30 days."


def test_the_api_lists_replies_as_events(client, runtime, db_session, sent) -> None:
    from campaigns.accounts import api_keys

    campaign, contacts, by_rcpt = sent
    reply = _receive(runtime, db_session, by_rcpt[contacts[0].email], "Is the shop open on Sunday?")
    _receive(runtime, db_session, by_rcpt[contacts[1].email], "Away.", extra={"Auto-Submitted": "auto-replied"})
    key = api_keys.create_key(db_session, "CRM", ["contacts:read", "campaigns:read"]).secret
    db_session.commit()
    r = client.get(f"/api/v1/campaigns/{campaign.id}/events?type=reply", headers=auth(key))
    assert r.status_code == 200, r.get_json()
    assert [(e["contact_id"], e["data"]["reply_id"], e["data"]["text"]) for e in r.get_json()["data"]] == \
        [(contacts[0].id, reply.id, "Is the shop open on Sunday?")]
    r = client.get(f"/api/v1/contacts/{contacts[1].id}/events?type=auto_reply", headers=auth(key))
    assert [e["type"] for e in r.get_json()["data"]] == ["auto_reply"]
