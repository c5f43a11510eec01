"""End to end through real parts: database, Redis + RQ worker (burst), SMTP server on loopback, DKIM."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from pathlib import Path

import dkim
import pytest
from sqlalchemy import func, select, update

from campaigns.errors import ValidationError
from campaigns.models import Campaign, CampaignStatus, Contact, ContactStatus, Send, SendStatus, Subscription
from campaigns.sending import delivery
from campaigns.sending import lifecycle as sending
from mailer.compose import TemplateError
from mailer.dkim import DKIMKey

ROOT = Path(__file__).resolve().parents[3]


def dns_for(settings):
    key = DKIMKey.from_pem(settings.dkim_domain, settings.dkim_selector, settings.dkim_private_key_path.read_bytes())

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name.decode().rstrip(".") == key.dns_record_name()
        return key.dns_txt_value().encode()

    return dnsfunc


def messages(outbox):
    return [outbox.get(e.key) for e in outbox.list(limit=10_000)]


def test_fifty_contacts_personalized_signed_and_sent_once(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(50)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()

    got = messages(outbox)
    assert len(got) == 50
    by_rcpt = {m.recipients[0]: m for m in got}
    assert set(by_rcpt) == {c.email for c in contacts}
    dnsfunc = dns_for(runtime.settings)
    for contact in contacts:
        msg = by_rcpt[contact.email]
        parsed = email.message_from_bytes(msg.raw, policy=email.policy.default)
        assert parsed["Subject"] == f"Hi {contact.first_name}, our news"
        assert f"Hello {contact.first_name}, news from Berlin" in msg.html
        assert f"Hello {contact.first_name}" in msg.text
        assert dkim.verify(msg.raw, dnsfunc=dnsfunc), contact.email
        sig = parsed["DKIM-Signature"].replace("\r\n", "").replace(" ", "").replace("\t", "")
        signed = re.search(r"h=([^;]+)", sig).group(1).lower().split(":")
        assert {"list-unsubscribe", "list-unsubscribe-post", "from", "to", "subject", "message-id"} <= set(signed)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = [u.strip(" <>") for u in parsed["List-Unsubscribe"].split(",")]
        assert https.startswith("https://mail.shop.test/u/") and mailto.startswith("mailto:unsubscribe+")
        assert https in msg.html and "Green Thumb, Lindenstraße 1, 10115 Berlin" in msg.html
        assert msg.envelope_from.startswith("bounces+") and msg.envelope_from.endswith("@shop.test")
        # No other recipient's data leaks into this message.
        assert all(other.email not in msg.raw.decode("latin-1") for other in contacts[:5] if other is not contact)

    db_session.rollback()   # end the read snapshot...

    db_session.expire_all()  # ...and forget loaded rows
    done = db_session.get(Campaign, campaign.id)
    assert done.status == CampaignStatus.FINISHED and done.sent == 50 and done.recipients == 50
    assert {s.status for s in db_session.scalars(select(Send))} == {SendStatus.SENT}
    assert len({dict(m.headers)["Message-ID"] for m in got}) == 50

    # A second dispatch of the same campaign (e.g. a duplicated job) sends nothing new.
    assert sending.dispatch(runtime, campaign.id) == 0
    runtime.queue.enqueue("campaigns.tasks.dispatch_campaign", campaign.id)
    run_worker()
    assert outbox.count() == 50


def test_status_is_rechecked_at_send_time(runtime, db_session, make_contacts, make_campaign, outbox,
                                          run_worker) -> None:
    topic, contacts = make_contacts(10)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    # Dispatch creates the rows; then two people leave before the batch job runs.
    sending.dispatch(runtime, campaign.id)
    contacts[0].status = ContactStatus.UNSUBSCRIBED
    db_session.get(Subscription, (contacts[1].id, topic.id)).subscribed = False
    db_session.commit()
    runtime.queue.empty()
    delivery.send_batch(runtime, campaign.id, 0, 10**9)
    rcpts = {m.recipients[0] for m in messages(outbox)}
    assert contacts[0].email not in rcpts and contacts[1].email not in rcpts and len(rcpts) == 8
    skipped = {s.contact_id: s.last_error for s in db_session.scalars(select(Send).where(Send.status == "skipped"))}
    assert skipped == {contacts[0].id: "contact is unsubscribed", contacts[1].id: "unsubscribed from this topic"}


def test_pause_and_cancel_stop_between_claims(runtime, db_session, make_contacts, make_campaign, outbox,
                                              run_worker) -> None:
    topic, _ = make_contacts(30)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    sending.dispatch(runtime, campaign.id)
    runtime.queue.empty()
    sending.pause(db_session, campaign)
    db_session.commit()
    result = delivery.send_batch(runtime, campaign.id, 0, 10**9)
    assert result.stopped == "paused" and outbox.count() == 0
    sending.start(db_session, runtime, campaign)   # resume
    db_session.commit()
    run_worker()
    assert outbox.count() == 30
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED

    other = make_campaign([topic])
    sending.start(db_session, runtime, other)
    db_session.commit()
    sending.dispatch(runtime, other.id)
    runtime.queue.empty()
    sending.cancel(db_session, other)
    db_session.commit()
    run_worker()
    assert outbox.count() == 30
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.get(Campaign, other.id).skipped == 30


def test_template_cannot_reach_python_internals(runtime, db_session, make_contacts, make_campaign, outbox,
                                                run_worker) -> None:
    topic, _ = make_contacts(2)
    mjml = ("<mjml><mj-body><mj-section><mj-column><mj-text>{{ ''.__class__.__mro__ }}"
            "{{ contact.__class__.__init__.__globals__ }}</mj-text></mj-column></mj-section></mj-body></mjml>")
    campaign = make_campaign([topic], mjml=mjml)
    # The sample render before sending meets the sandbox first: the campaign is refused, naming why.
    with pytest.raises(ValidationError, match="not allowed"):
        sending.start(db_session, runtime, campaign)
    run_worker()
    assert outbox.count() == 0
    # Had it been started anyway (content changed under a running campaign), the worker's render is sandboxed too.
    mailer = delivery.CampaignMailer.for_campaign(runtime, db_session, campaign)
    with pytest.raises(TemplateError, match="not allowed"):
        mailer.message(0, 0, "", "x@example.com", {"email": "x@example.com", "first_name": "X"})


def test_real_worker_process_in_burst_mode(runtime, db_session, make_contacts, make_campaign, outbox) -> None:
    """The worker.py entry point, as production runs it, configured only by environment variables."""
    s = runtime.settings
    topic, _ = make_contacts(12)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    env = dict(os.environ, DATABASE_URL=s.database_url, REDIS_URL=s.redis_url, SMTP_URL=s.smtp_urls[0],
               SECRET_KEY=s.secret_key, BASE_URL=s.base_url, DKIM_DOMAIN=s.dkim_domain,
               DKIM_SELECTOR=s.dkim_selector, DKIM_PRIVATE_KEY_PATH=str(s.dkim_private_key_path),
               RAPPORT_QUEUE=s.queue_name, RAPPORT_INSTANCE=str(s.instance_path))
    proc = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outbox.count() == 12
    dnsfunc = dns_for(s)
    assert all(dkim.verify(m.raw, dnsfunc=dnsfunc) for m in messages(outbox))
    db_session.rollback()   # end the read snapshot...
    db_session.expire_all()  # ...and forget loaded rows
    assert db_session.scalar(select(func.count()).select_from(Send).where(Send.status == "sent")) == 12


@pytest.mark.parametrize("kind", ["transactional"])
def test_transactional_mail_skips_bounced_but_not_topic_choice(runtime, db_session, make_contacts, make_campaign,
                                                               outbox, run_worker, kind: str) -> None:
    topic, contacts = make_contacts(3)
    contacts[0].status = ContactStatus.BOUNCED
    db_session.commit()
    campaign = make_campaign([topic], kind=kind)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    rcpts = {m.recipients[0] for m in messages(outbox)}
    assert rcpts == {contacts[1].email, contacts[2].email}
    parsed = email.message_from_bytes(messages(outbox)[0].raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] is None
    assert db_session.scalar(select(func.count()).select_from(Contact)) == 3


def test_dispatch_reads_only_each_chunks_subscriptions(runtime, db_session, make_contacts, make_campaign,
                                                       monkeypatch) -> None:
    """Each chunk's topic EXISTS is limited to the chunk's contact ids on subscription too (without it PostgreSQL
    aggregates the whole subscription table once per chunk), and the chunks together still reach everyone."""
    from sqlalchemy import event

    topic, contacts = make_contacts(25)
    leaver = contacts[13]           # off the topic: the ranged EXISTS still leaves them out
    db_session.execute(update(Subscription).where(Subscription.contact_id == leaver.id).values(subscribed=False))
    db_session.commit()
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    monkeypatch.setattr(sending, "DISPATCH_CHUNK", 10)
    inserts: list[tuple[str, dict]] = []
    bounds: list[str] = []

    def seen(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SEND"):
            inserts.append((statement, parameters))
        elif statement.lstrip().upper().startswith("SELECT MAX("):
            bounds.append(statement)

    engine = runtime.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert sending.dispatch(runtime, campaign.id) == 24
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(inserts) == 3
    # A chunk's last id is found by walking the contact ids alone: with the audience's EXISTS in that walk, PostgreSQL
    # joined every remaining subscription once per chunk (2 s a chunk at 1,000,000 contacts).
    assert len(bounds) == 4 and not any("subscription" in b or "status" in b for b in bounds), bounds
    for statement, _params in inserts:
        assert re.search(r"subscription\.contact_id > ", statement) and \
            re.search(r"subscription\.contact_id <= ", statement), statement
    db_session.expire_all()
    sent_to = set(db_session.scalars(select(Send.contact_id).where(Send.campaign_id == campaign.id)))
    assert sent_to == {c.id for c in contacts} - {leaver.id}


def test_internationalized_addresses_get_a_readable_to_header_and_a_valid_signature(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    """An IDN domain travels as A-labels (no SMTPUTF8 needed); a non-ASCII local part stays UTF-8 in To (RFC 6532)
    and in RCPT (SMTPUTF8), DKIM-signed over its UTF-8 bytes (RFC 8616). Both used to get a To header that was one
    RFC 2047 word around the whole 'name <address>': no address at all for the reader's client."""
    from campaigns.contacts.records import save_contact

    topic, _ = make_contacts(1)
    zoe = save_contact(db_session, {"email": "zoë@example.com", "first_name": "Zoë", "last_name": "Ångström"},
                       topic_ids=[topic.id])
    ana = save_contact(db_session, {"email": "ana@bücher.example", "first_name": "Ana", "last_name": "Silva"},
                       topic_ids=[topic.id])
    db_session.commit()
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()

    by_rcpt = {m.recipients[0]: m for m in messages(outbox)}
    assert {"zoë@example.com", "ana@xn--bcher-kva.example"} <= set(by_rcpt), set(by_rcpt)
    dnsfunc = dns_for(runtime.settings)
    for rcpt, name, addr in (("zoë@example.com", "Zoë Ångström", "zoë@example.com"),
                             ("ana@xn--bcher-kva.example", "Ana Silva", "ana@xn--bcher-kva.example")):
        msg = by_rcpt[rcpt]
        parsed = email.message_from_string(msg.raw.decode("utf-8"), policy=email.policy.SMTPUTF8)
        to = parsed["To"].addresses[0]
        assert (to.display_name, to.addr_spec) == (name, addr)
        assert dkim.verify(msg.raw, dnsfunc=dnsfunc), rcpt
    assert by_rcpt["ana@xn--bcher-kva.example"].raw.isascii()
    db_session.rollback()
    assert db_session.scalar(select(Campaign.sent).where(Campaign.id == campaign.id)) == 3
    assert {zoe.email, ana.email} == {"zoë@example.com", "ana@bücher.example"}
