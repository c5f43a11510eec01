"""Replies with real parts: a campaign goes through the worker to the capture server, the recipient answers the
captured message (its reply+TOKEN Reply-To), the answer comes back through the MTA pipe command or a mailbox poll
(the IMAP and POP3 stubs of the ingest tests), and the forward to the owner is counted at the capture server."""

from __future__ import annotations

import os
import subprocess
import sys
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.contacts.records import timeline
from campaigns.feedback import ingest
from campaigns.models import Contact, Event, MailState, Reply
from campaigns.replies import inbox
from campaigns.reports.campaign_report import campaign_report
from tests.campaigns.feedback.test_ingest import _IMAPHandler, _Mailbox, _POP3Handler, _serve, dsn_for
from tests.campaigns.replies.conftest import REPLY_DOMAIN, answer, header, reply_to
from tests.helpers import fresh

ROOT = Path(__file__).resolve().parents[3]


GMAIL_REPLY = """Yes please, I'd love the winter catalogue!

Best,
Zoë

On Wed, Dec 2, 2026 at 9:00 AM Anna Becker <news@shop.test> wrote:
> Hello Zoë0, news from Berlin.
> Read the guide
"""

OUT_OF_OFFICE = """Thank you for your message. I am out of the office until 14 December with limited access to
e-mail. For urgent matters please contact my colleague.
"""


def ingest_committed(session, tokens, raw: bytes, **kw) -> ingest.Outcome:
    out = ingest.ingest_message(session, tokens, raw, **kw)
    session.commit()
    return out


def test_each_message_carries_its_own_reply_address(sent) -> None:
    _campaign, contacts, by_rcpt = sent
    addresses = {reply_to(by_rcpt[c.email]) for c in contacts}
    assert len(addresses) == 3
    assert all(a.startswith("reply+") and a.endswith("@" + REPLY_DOMAIN) for a in addresses)
    # The display name stays the sender's; the signature covers the header.
    msg = by_rcpt[contacts[0].email]
    assert "Anna Becker" in header(msg, "Reply-To")
    assert "reply-to" in header(msg, "DKIM-Signature").lower()


def test_a_reply_through_the_mta_pipe_reaches_timeline_inbox_and_owner(runtime, db_session, sent, outbox,
                                                                       tmp_path) -> None:
    campaign, contacts, by_rcpt = sent
    msg = by_rcpt[contacts[0].email]
    score_before = fresh(db_session).get(Contact, contacts[0].id).engagement_score or 0.0
    before = {m.key for m in outbox.list()}
    raw = answer(msg, GMAIL_REPLY)
    s = runtime.settings
    env = dict(os.environ, DATABASE_URL=s.database_url, SECRET_KEY=s.secret_key, RAPPORT_INSTANCE=str(tmp_path),
               REDIS_URL="redis://127.0.0.1:1/0", SMTP_URL=s.smtp_urls[0], DKIM_DOMAIN=s.dkim_domain,
               DKIM_SELECTOR=s.dkim_selector, DKIM_PRIVATE_KEY_PATH=str(s.dkim_private_key_path),
               SENDER_NAME=s.sender_name, BASE_URL=s.base_url, REPLY_ADDRESSES="1", REPLY_DOMAIN=REPLY_DOMAIN)
    done = subprocess.run([sys.executable, "-m", "campaigns", "ingest", "--recipient", reply_to(msg)], input=raw,
                          env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "reply"

    session = fresh(db_session)
    reply = session.scalar(select(Reply))
    assert (reply.contact_id, reply.campaign_id, reply.matched_by, reply.auto) == \
        (contacts[0].id, campaign.id, "token", False)
    # The new text only: Gmail's "On … wrote:" quote and the sign-off are gone, the original is kept.
    assert reply.text == "Yes please, I'd love the winter catalogue!"
    assert "> Hello Zoë0" in reply.original_text
    # The contact's timeline has the reply, with its text.
    entries = timeline(session, contacts[0].id).entries
    assert entries[0].event.type == "reply" and "winter catalogue" in entries[0].detail
    # The inbox lists it as open; the engagement score grew (a reply weighs more than a click).
    page = inbox.listing(session, view="open")
    assert [r.reply.id for r in page.rows] == [reply.id] and page.counts["open"] == 1
    assert session.get(Contact, contacts[0].id).engagement_score >= score_before + 4.9
    # Forwarded at once to the owner, From the customer's name at our domain, Reply-To the customer.
    new = [outbox.get(m.key) for m in outbox.list() if m.key not in before]
    assert len(new) == 1 and new[0].recipients == ("olivia@shop.test",)
    fwd = new[0]
    from_name, from_addr = parseaddr(fwd.from_)
    assert from_name.startswith("Zoë0 Tester via") and from_addr == "replies@shop.test"
    assert [a for _n, a in getaddresses([header(fwd, "Reply-To")])] == [contacts[0].email]
    assert header(fwd, "DKIM-Signature") and "d=shop.test" in header(fwd, "DKIM-Signature").replace(" ", "")
    assert fwd.text.startswith("Yes please, I'd love the winter catalogue!")
    assert reply.forward_state == MailState.SENT and reply.forward_to == "olivia@shop.test"
    # The campaign report shows the reply next to the clicks.
    assert campaign_report(session, campaign.id)["replies"] == 1


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_mailbox_poll_tells_an_out_of_office_from_a_person(runtime, db_session, sent, outbox, scheme) -> None:
    _campaign, contacts, by_rcpt = sent
    ooo = answer(by_rcpt[contacts[1].email], OUT_OF_OFFICE, subject="Out of Office: Hi there",
                 extra={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"})
    vacation = answer(by_rcpt[contacts[2].email], "Ich bin im Urlaub.", subject="Abwesenheitsnotiz: Hi")
    human = answer(by_rcpt[contacts[1].email], "Wann öffnet der Laden?\n\nAm 02.12.2026 um 09:00 schrieb Anna "
                   "Becker <news@shop.test>:\n> Hello\n")
    before = {m.key for m in outbox.list()}
    box = _Mailbox([ooo, vacation, human])
    server = _serve(_IMAPHandler if scheme == "imap" else _POP3Handler, box)
    try:
        url = f"{scheme}://bounces:s3cret@127.0.0.1:{server.server_address[1]}/INBOX"
        assert ingest.poll_mailbox(runtime, url) == 3
    finally:
        server.shutdown()
        server.server_close()
    session = fresh(db_session)
    replies = list(session.scalars(select(Reply).order_by(Reply.id)))
    assert [(r.contact_id, r.auto) for r in replies] == [(contacts[1].id, True), (contacts[2].id, True),
                                                         (contacts[1].id, False)]
    assert replies[2].text == "Wann öffnet der Laden?"
    types = [e.type for e in session.scalars(select(Event).where(Event.type.in_(["reply", "auto_reply"]))
                                             .order_by(Event.id))]
    assert types == ["auto_reply", "auto_reply", "reply"]
    # Auto-replies are never engagement, never forwarded, never in the open inbox.
    assert (session.get(Contact, contacts[2].id).engagement_score or 0) == 0
    counts = inbox.listing(session).counts
    assert (counts["open"], counts["auto"]) == (1, 2)
    # The person's reply (a contact without an owner) went to REPLY_FORWARD_TO, and only it.
    new = [outbox.get(m.key) for m in outbox.list() if m.key not in before]
    assert [m.recipients for m in new] == [("team@shop.test",)]


def test_a_garbled_token_falls_back_to_the_from_address_and_strangers_are_refused(runtime, db_session,
                                                                                sent) -> None:
    _campaign, contacts, by_rcpt = sent
    msg = by_rcpt[contacts[2].email]
    token = reply_to(msg).split("+", 1)[1].split("@")[0]
    garbled = f"reply+{token[:-3]}{'A' if token[-3] != 'A' else 'B'}{token[-2:]}@{REPLY_DOMAIN}"
    raw = answer(msg, "Please call me back.", to=garbled, extra={"X-Test": "1"})
    raw = raw.replace(b"In-Reply-To", b"X-In-Reply-To").replace(b"References", b"X-References")
    out = ingest_committed(db_session, runtime.tokens, raw, envelope_recipient=garbled)
    assert out.kind == "reply" and out.contact_id == contacts[2].id
    reply = fresh(db_session).scalar(select(Reply))
    assert (reply.matched_by, reply.campaign_id) == ("from", None)
    # The same message read again (a mailbox re-read after a crash) counts once.
    assert ingest_committed(db_session, runtime.tokens, raw, envelope_recipient=garbled).kind == "duplicate"
    # A stranger writing to a forged address is refused cleanly: nothing stored.
    stranger = answer(msg, "Buy cheap watches", to=garbled, from_="spam@elsewhere.example")
    stranger = stranger.replace(b"In-Reply-To", b"X-In-Reply-To").replace(b"References", b"X-References")
    out = ingest_committed(db_session, runtime.tokens, stranger, envelope_recipient=garbled)
    assert out.kind == "ignored"
    assert fresh(db_session).scalar(select(func.count(Reply.id))) == 1


def test_a_reply_without_a_reply_address_is_matched_by_our_message_id(runtime, db_session, sent) -> None:
    campaign, contacts, by_rcpt = sent
    msg = by_rcpt[contacts[1].email]
    out = ingest_committed(db_session, runtime.tokens, answer(msg, "Thanks!", to="anna@shop.test"))
    assert out.kind == "reply"
    reply = fresh(db_session).scalar(select(Reply))
    assert (reply.contact_id, reply.campaign_id, reply.matched_by) == (contacts[1].id, campaign.id, "message-id")


def test_bounces_still_go_to_bounce_handling(runtime, db_session, sent, outbox) -> None:
    _campaign, contacts, by_rcpt = sent
    entry = next(m for m in outbox.list() if m.recipients[0] == contacts[0].email)
    out = ingest_committed(db_session, runtime.tokens, dsn_for(entry, by_rcpt[contacts[0].email]))
    assert out.kind == "hard_bounce"
    assert fresh(db_session).scalar(select(func.count(Reply.id))) == 0


def test_html_only_reply_is_read_as_text_and_kept_sanitised(runtime, db_session, sent) -> None:
    _campaign, contacts, by_rcpt = sent
    msg = by_rcpt[contacts[0].email]
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = header(msg, "To"), header(msg, "Reply-To"), "Re: news"
    m.set_content('<p onclick="steal()">Great <b>offer</b>!</p><script>alert(1)</script>'
                  '<img src="https://tracker.example/p.gif"><p>Thanks</p>', subtype="html")
    assert ingest_committed(db_session, runtime.tokens, m.as_bytes()).kind == "reply"
    reply = fresh(db_session).scalar(select(Reply))
    assert reply.text == "Great offer!\n\nThanks"
    assert "<b>offer</b>" in reply.original_html
    for bad in ("script", "onclick", "<img", "tracker.example"):
        assert bad not in reply.original_html


def test_replied_in_the_last_n_days_is_a_segment_rule(runtime, db_session, sent) -> None:
    from campaigns.contacts import segments
    from campaigns.models import utcnow

    _campaign, contacts, by_rcpt = sent
    ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[0].email], "Count me in."))
    ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[1].email], OUT_OF_OFFICE,
                                                        extra={"Auto-Submitted": "auto-replied"}))
    definition = {"match": "all", "rules": [{"field": "replied", "op": "in_last_days", "value": 7}]}
    session = fresh(db_session)
    cond = segments.condition(session, definition, now=utcnow())
    assert set(session.scalars(select(Contact.id).where(cond))) == {contacts[0].id}   # the auto-reply is not one
    never = {"match": "all", "rules": [{"field": "replied", "op": "not_in_last_days", "value": 7}]}
    cond = segments.condition(session, never, now=utcnow())
    assert set(session.scalars(select(Contact.id).where(cond))) == {contacts[1].id, contacts[2].id}


def test_a_forward_the_relay_could_not_take_is_retried_then_given_up(runtime, db_session, sent, outbox) -> None:
    import socket

    from campaigns.replies import mail as reply_mail
    from campaigns.runtime import Runtime

    _campaign, contacts, by_rcpt = sent
    out = ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[0].email], "Call me, please."))
    reply_id = int(out.detail)
    with socket.socket() as s:   # a port nobody listens on: the relay is down
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    down = Runtime(runtime.settings.with_overrides({"smtp_urls": (f"smtp://127.0.0.1:{dead}",)}))
    try:
        assert reply_mail.send_due(down) == 0
        row = fresh(db_session).get(Reply, reply_id)
        assert (row.forward_state, row.mail_attempts) == (MailState.PENDING, 1) and row.last_error
        # The relay is back: the periodic job's next run forwards it, once.
        before = len(outbox.list())
        assert reply_mail.send_due(runtime) == 1 and reply_mail.send_due(runtime) == 0
        assert len(outbox.list()) == before + 1
        assert fresh(db_session).get(Reply, reply_id).forward_state == MailState.SENT
        # Another reply while the relay stays down is given up after MAX_MAIL_ATTEMPTS, with the reason kept.
        out = ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[1].email], "Hello?"))
        for _ in range(reply_mail.MAX_MAIL_ATTEMPTS):
            reply_mail.send_due(down)
        row = fresh(db_session).get(Reply, int(out.detail))
        assert (row.forward_state, row.mail_attempts) == (MailState.FAILED, reply_mail.MAX_MAIL_ATTEMPTS)
        assert reply_mail.send_due(runtime) == 0
    finally:
        down.close()


def test_a_colleague_answering_a_forwarded_message_is_recorded_as_themselves(runtime, db_session, sent) -> None:
    campaign, contacts, by_rcpt = sent
    # Contact 0 forwarded the newsletter to contact 1, who answered it: the token is 0's, the reply is 1's.
    raw = answer(by_rcpt[contacts[0].email], "Forwarded to me by a friend: can I join too?",
                 from_=f"Colleague <{contacts[1].email}>")
    out = ingest_committed(db_session, runtime.tokens, raw)
    assert out.kind == "reply" and out.contact_id == contacts[1].id
    reply = fresh(db_session).scalar(select(Reply))
    assert (reply.contact_id, reply.campaign_id, reply.send_id, reply.matched_by) == \
        (contacts[1].id, campaign.id, None, "from")
    assert fresh(db_session).scalar(select(func.count(Event.id)).where(Event.contact_id == contacts[0].id,
                                                                       Event.type == "reply")) == 0


def test_gdpr_export_holds_the_replies_and_erasure_removes_them(runtime, db_session, sent) -> None:
    from campaigns.contacts.exports import erase_contact, gdpr_export

    _campaign, contacts, by_rcpt = sent
    ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[0].email], "My new address is ..."))
    data = gdpr_export(fresh(db_session), contacts[0].id)
    assert [r["text"] for r in data["replies"]] == ["My new address is ..."]
    session = fresh(db_session)
    erase_contact(session, contacts[0].id, by="test")
    session.commit()
    assert fresh(db_session).scalar(select(func.count(Reply.id))) == 0
