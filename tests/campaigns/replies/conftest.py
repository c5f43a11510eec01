"""Shared parts of the replies tests: reply addresses on, a campaign really sent, and a mail client's answer."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import pytest

from campaigns.models import Sender
from campaigns.sending import lifecycle as sending

REPLY_DOMAIN = "reply.shop.test"


@pytest.fixture()
def settings(settings):
    return settings.with_overrides({"reply_addresses": True, "reply_domain": REPLY_DOMAIN,
                                    "reply_forward_to": "team@shop.test"})


@pytest.fixture()
def sent(runtime, db_session, make_contacts, make_campaign, outbox, run_worker):
    """A campaign delivered to 3 contacts, the first owned by Olivia; returns (campaign, contacts, {email: msg})."""
    topic, contacts = make_contacts(3)
    owner = Sender(name="Olivia Owner", email="olivia@shop.test")
    db_session.add(owner)
    db_session.flush()
    contacts[0].owner_id = owner.id
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    by_rcpt = {m.recipients[0]: outbox.get(m.key) for m in outbox.list()}
    return campaign, contacts, by_rcpt


def header(msg, name: str) -> str:
    return next(v for k, v in msg.headers if k.lower() == name.lower())


def reply_to(msg) -> str:
    return parseaddr(" ".join(header(msg, "Reply-To").split()))[1]


def answer(msg, body: str, *, to: str | None = None, subject: str | None = None, from_: str | None = None,
           extra: dict | None = None, html: str | None = None) -> bytes:
    """What a mail client sends when the recipient of msg presses Reply."""
    m = EmailMessage()
    m["From"] = from_ or header(msg, "To")
    m["To"] = to or header(msg, "Reply-To")
    m["Subject"] = subject or "Re: " + msg.subject
    m["Date"] = formatdate()
    m["Message-ID"] = f"<answer-{abs(hash((body, to, from_)))}@example.com>"
    m["In-Reply-To"] = header(msg, "Message-ID")
    m["References"] = header(msg, "Message-ID")
    for k, v in (extra or {}).items():
        m[k] = v
    m.set_content(body)
    if html:
        m.add_alternative(html, subtype="html")
    return m.as_bytes()


