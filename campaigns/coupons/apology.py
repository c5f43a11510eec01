"""Apology and dispute follow-up: a personal transactional message, written on a contact's page and sent at once.

The marketer's words go into the apology starter as escaped text (never as template code), from a named Sender,
optionally with a refund note and one code of a coupon pool. It is a one-recipient transactional campaign sent
through the normal path (sending.dispatch_to), so it is DKIM-signed, logged in the send table and never goes to a
bounced, complained or suppressed address; the contact's timeline gets a personal_mail event.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.composing import editor as campaign_service
from campaigns.contacts import records as contact_service
from campaigns.coupons import pools as coupon_service
from campaigns.db import parse_id
from campaigns.errors import ValidationError
from campaigns.models import (
    Campaign,
    CampaignKind,
    Contact,
    ContactStatus,
    CouponPool,
    Event,
    EventType,
    Sender,
    utcnow,
)
from campaigns.resources import starters_dir
from campaigns.runtime import Runtime
from campaigns.sending import lifecycle as sending

logger = logging.getLogger(__name__)

STARTER = starters_dir() / "apology.mjml"
MAX_SUBJECT = 200
MAX_MESSAGE = 10_000
MAX_NOTE = 2_000
DEFAULT_MESSAGE = ("I am sorry about what happened with your order. That is not how we want you to feel about us, "
                   "and I have looked into it myself.\n\nHere is what we are doing about it: …")


def default_subject(contact: Contact) -> str:
    """The suggested subject, with the contact's first name when there is one."""
    if contact.first_name:
        return f"I'm sorry, {contact.first_name}: let me put this right"
    return "I'm sorry: let me put this right"


def literal(text: str) -> str:
    """Text that personalization outputs as written: each brace in its own raw block, so no template code runs."""
    return re.sub(r"[{}]", lambda m: "{% raw %}" + m.group() + "{% endraw %}", text)


def _text_mjml(text: str, **attrs: str) -> str:
    """Plain text as mj-text paragraphs: HTML-escaped, and literal (never template code)."""
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    out = []
    for para in (p.strip() for p in text.replace("\r\n", "\n").split("\n\n")):
        if not para:
            continue
        html = literal(str(escape(para)))
        out.append(f"<mj-text{extra}>{html.replace(chr(10), '<br>')}</mj-text>")
    return "\n        ".join(out)


def compose_mjml(message: str, refund_note: str = "", sender_title: str = "") -> str:
    """The apology starter filled with the marketer's message, the refund note and the sender's title."""
    mjml = STARTER.read_text(encoding="utf-8")
    mjml = mjml.replace("<!-- rapport:message -->", _text_mjml(message))
    refund = ""
    if refund_note.strip():
        refund = ('<mj-section background-color="#ffffff" padding="0 32px 8px"><mj-column border-left="4px solid '
                  '#16a34a" padding="4px 0 4px 12px">' + _text_mjml(refund_note, font_size="15px") +
                  "</mj-column></mj-section>")
    mjml = mjml.replace("<!-- rapport:refund -->", refund)
    title = literal(str(escape(sender_title))) if sender_title else ""
    return mjml.replace("<!-- rapport:title -->", f"<br>{title}" if title else "")


@dataclass(frozen=True)
class Apology:
    campaign_id: int
    queued: int


def check_reachable(session: Session, contact: Contact) -> None:
    """Refuse, with the reason, a contact no mail may go to (bounced, complained, suppressed, unconfirmed)."""
    if contact.status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED):
        raise ValidationError(f"{contact.email} is {contact.status}: no mail goes to this address, not even a "
                              "personal one. Call or write another way.")
    if contact.status == ContactStatus.PENDING:
        raise ValidationError(f"{contact.email} has not confirmed the address yet; mail cannot go to it")
    suppressed = contact_service.suppressed_status(session, contact.email)
    if suppressed is not None:
        raise ValidationError(f"{contact.email} is on the suppression list ({suppressed}): no mail goes to it")


def send_apology(rt: Runtime, contact_id: int, data: Mapping[str, Any], *, written_by: str) -> Apology:
    """Validate the form, create the one-recipient transactional campaign, queue it and log it on the timeline.

    Opens its own session and commits it: the campaign must be stored before dispatch_to queues it.
    """
    with rt.session_factory() as session:
        campaign_id, contact_id = _write(session, contact_id, data, written_by=written_by)
        session.commit()
    queued = sending.dispatch_to(rt, campaign_id, [contact_id])
    logger.info("personal mail campaign %s to contact %s queued by %s", campaign_id, contact_id, written_by)
    return Apology(campaign_id, queued)


def personal_message(session: Session, data: Mapping[str, Any]) -> tuple[Sender, str, str]:
    """The sender, subject and text of a personal mail as a form gave them, checked (ValidationError naming the
    field otherwise); shared by every personal mail written in the admin (an apology, a draw's winners)."""
    raw_sender = str(data.get("sender_id", "")).strip()
    sender = session.get(Sender, sender_id) if (sender_id := parse_id(raw_sender)) is not None else None
    if sender is None:
        raise ValidationError("choose who the message comes from", field="sender_id")
    subject = " ".join(str(data.get("subject", "")).split())
    if not subject or len(subject) > MAX_SUBJECT:
        raise ValidationError(f"write a subject (at most {MAX_SUBJECT} characters)", field="subject")
    message = str(data.get("message", "")).strip()
    if not message or len(message) > MAX_MESSAGE:
        raise ValidationError(f"write the message (at most {MAX_MESSAGE:,} characters)", field="message")
    return sender, subject, message


def _write(session: Session, contact_id: int, data: Mapping[str, Any], *, written_by: str) -> tuple[int, int]:
    """The checked campaign and its timeline event, flushed; (campaign id, contact id)."""
    contact = contact_service.get_contact(session, contact_id)
    check_reachable(session, contact)
    sender, subject, message = personal_message(session, data)
    note = str(data.get("refund_note", "")).strip()
    if len(note) > MAX_NOTE:
        raise ValidationError(f"the refund note is too long (at most {MAX_NOTE:,} characters)", field="refund_note")
    pool = None
    raw_pool = str(data.get("coupon_pool_id", "")).strip()
    if raw_pool:
        pool = session.get(CouponPool, pool_id) if (pool_id := parse_id(raw_pool)) is not None else None
        if pool is None:
            raise ValidationError("that coupon pool does not exist", field="coupon_pool_id")
        if pool.expires_on < dt.date.today():
            raise ValidationError(f"the codes of “{pool.name}” expired on {pool.expires_on}", field="coupon_pool_id")
        if coupon_service.free_count(session, pool.id) < 1:
            raise ValidationError(f"“{pool.name}” has no free codes left; add codes or send without one",
                                  field="coupon_pool_id")
    campaign = Campaign(
        name=f"Personal note to {contact.email} · {utcnow():%Y-%m-%d %H:%M}"[:200],
        kind=CampaignKind.TRANSACTIONAL, subject=literal(subject), preheader="",
        text_body="", all_contacts=False, relay="",
        from_name=sender.name, from_email=sender.email, reply_to=sender.reply_to or sender.email,
        mjml=compose_mjml(message, note, sender.title or ""), coupon_pool_id=pool.id if pool else None,
        status_reason=f"written by {written_by} on the contact's page")
    campaign_service.validate(campaign, session)   # the starter is ours, but a broken file should say so here
    session.add(campaign)
    session.flush()
    session.add(Event(contact_id=contact.id, campaign_id=campaign.id, type=EventType.PERSONAL_MAIL, data={
        "source": f"{sender.name}, written by {written_by}", "subject": subject, "refund_note": bool(note),
        "coupon_pool": pool.name if pool else ""}))
    session.flush()
    return campaign.id, contact.id


def senders(session: Session) -> list[Sender]:
    """The named people mail can come from."""
    return list(session.scalars(select(Sender).order_by(Sender.name)))
