"""Delivering one transactional message: taken (queued -> sending, once), the recipient re-checked, rendered from
its template with the same compiled campaign, tracked links and DKIM signature as campaign mail, handed to the
relay, and its outcome written on the row and the contact's timeline. Its open pixel and links carry tokens of
their own (TX_OPEN, TX_CLICK: the message's id), recorded per message by campaigns.feedback.tx_hits.

A 4xx or a lost connection before the message was handed over is retried (RETRY_DELAYS) through a delayed job; a
5xx for the recipient bounces it (recorded like any send-time rejection, which suppresses a hard bounce); a
message handed over without a reply is `unknown` and never sent again by itself.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import logging
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.contacts.records import personalization
from campaigns.contacts.suppression import suppressed_status
from campaigns.models import TX_FINAL, Campaign, Contact, Event, EventType, TxMessage, TxStatus, utcnow
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending import rejections
from campaigns.sending.delivery import CampaignMailer
from campaigns.transactional import files as tx_files
from campaigns.transactional.accept import blocked, enqueue
from mailer.compose import TemplateError
from mailer.message import Attachment
from mailer.tracking import Purpose
from mailer.transport import DeliveryError

logger = logging.getLogger(__name__)

RETRY_DELAYS = (30, 120, 600, 1800, 3600)     # seconds before each retry after a temporary failure
STUCK = dt.timedelta(minutes=10)              # a message "sending" this long belongs to a dead worker
MAILER_TTL = 30.0                             # seconds a built CampaignMailer is reused (sender, policy changes)
_mailers: dict[tuple[int, int, dt.datetime], tuple[float, CampaignMailer]] = {}


def _mailer(rt: Runtime, session: Session, campaign: Campaign) -> CampaignMailer:
    """The template's mailer, built at most every MAILER_TTL seconds per process and version of the campaign."""
    key = (id(rt), campaign.id, campaign.updated_at)
    now = time.monotonic()
    found = _mailers.get(key)
    if found is not None and now - found[0] < MAILER_TTL:
        return found[1]
    mailer = CampaignMailer.for_campaign(rt, session, campaign)
    # Features' per-send parts (coupons, surveys, a post-purchase run's order, feed items) need a send row, which a
    # transactional message has not: its values are the API call's variables alone (coupon and survey templates are
    # refused outright).
    mailer.contributions = []
    if len(_mailers) > 64:
        _mailers.clear()
    _mailers[key] = (now, mailer)
    return mailer


@dataclass
class Outcome:
    status: TxStatus
    reason: str = ""
    code: int | None = None
    reply: str = ""
    subject: str = ""


def _take(session: Session, tx_id: int) -> bool:
    """queued -> sending, for exactly one worker."""
    taken = session.execute(update(TxMessage).where(TxMessage.id == tx_id, TxMessage.status == TxStatus.QUEUED)
                            .values(status=TxStatus.SENDING, attempts=TxMessage.attempts + 1,
                                    next_attempt_at=None, updated_at=utcnow())).rowcount
    return bool(taken)


def send(rt: Runtime, tx_id: int) -> str:
    """Deliver one queued message; returns its status afterwards ("" when it was not queued)."""
    with rt.session_factory() as session:
        if not _take(session, tx_id):
            return ""
        session.commit()
        message = session.get(TxMessage, tx_id)
        contact = session.get(Contact, message.contact_id) if message.contact_id else None
        campaign = session.get(Campaign, message.campaign_id) if message.campaign_id else None
        outcome = _prepare(rt, session, message, contact, campaign)
        rendered = _rendered(rt, session, message, contact, campaign) if outcome is None else outcome
        session.commit()        # the link table, if the mailer stored it; no transaction held while sending
        outcome = rendered if isinstance(rendered, Outcome) else _hand_over(rt, message, *rendered)
        _record(rt, session, message, outcome)
        session.commit()
    if outcome.status == TxStatus.QUEUED:
        queueing.enqueue_at(rt.tx_queue, message.next_attempt_at, Job.SEND_TRANSACTIONAL, tx_id)
    return str(outcome.status)


def _prepare(rt: Runtime, session: Session, message: TxMessage, contact: Contact | None,
             campaign: Campaign | None) -> Outcome | None:
    """The outcome when the message cannot go (recipient blocked, template gone or broken), else None."""
    if contact is None:
        return Outcome(TxStatus.FAILED, "the contact was erased")
    reason = blocked(contact, suppressed_status(session, contact.email))
    if reason:
        return Outcome(TxStatus.SUPPRESSED, reason)
    if campaign is None:
        return Outcome(TxStatus.FAILED, "the template was deleted")
    try:
        _mailer(rt, session, campaign)   # builds (and caches) it: a template that does not compile fails here
    except (TemplateError, ValueError) as exc:
        return Outcome(TxStatus.FAILED, f"template error: {exc}"[:1000])
    if campaign.coupon_pool_id is not None or campaign.survey_id is not None:
        return Outcome(TxStatus.FAILED, "the template hands out a coupon or survey; transactional mail cannot")
    return None


def _rendered(rt: Runtime, session: Session, message: TxMessage, contact: Contact,
              campaign: Campaign) -> tuple[str, str, bytes] | Outcome:
    """(relay name, envelope sender, signed bytes), or the failure of a template that does not render."""
    mailer = _mailer(rt, session, campaign)
    try:
        envelope_from, data = mailer.message(
            0, contact.id, contact.full_name, message.email,
            personalization(contact, [i.interest for i in contact.interests]), owner_id=contact.owner_id,
            variables=message.variables or {},
            message_token=rt.tokens.seal(Purpose.TX_MESSAGE, message.id), tx_id=message.id,
            attachments=[Attachment(f.filename, f.content_type, f.data)
                         for f in tx_files.loaded(message.attachments or [])])
    except TemplateError as exc:
        return Outcome(TxStatus.FAILED, f"template error: {exc}"[:1000])
    return mailer.relay, envelope_from, data


def _hand_over(rt: Runtime, message: TxMessage, relay: str, envelope_from: str, data: bytes) -> Outcome:
    """Send the bytes; what the relay said (no database access: nothing is held while talking SMTP)."""
    subject = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data).get("Subject", "")
    try:
        result = rt.relays.pool(relay or None).send(envelope_from, [message.email], data)
    except DeliveryError as exc:
        if exc.maybe_delivered:
            return Outcome(TxStatus.UNKNOWN, "handed to the relay, no reply: it may have the message",
                           exc.smtp_code, str(exc), subject)
        if exc.permanent and not exc.relay_problem:
            return Outcome(TxStatus.BOUNCED, "the relay refused the recipient", exc.smtp_code, str(exc), subject)
        if message.attempts > len(RETRY_DELAYS):
            return Outcome(TxStatus.FAILED, f"not sent after {message.attempts} attempts", exc.smtp_code,
                           str(exc), subject)
        return Outcome(TxStatus.QUEUED, "will retry", exc.smtp_code, str(exc), subject)
    return Outcome(TxStatus.SENT, "", result.smtp_code, result.smtp_message, str(subject))


def _record(rt: Runtime, session: Session, message: TxMessage, outcome: Outcome) -> None:
    """The outcome on the row, the timeline and (a bounce) the contact; the caller commits."""
    now = utcnow()
    message.status = outcome.status
    message.reason = outcome.reason[:1000]
    message.smtp_code = outcome.code
    message.smtp_reply = outcome.reply[:1000]
    message.subject = outcome.subject[:998]
    message.updated_at = now
    if outcome.status == TxStatus.QUEUED:
        message.next_attempt_at = now + dt.timedelta(seconds=RETRY_DELAYS[message.attempts - 1])
    if outcome.status in TX_FINAL:
        message.attachments = tx_files.described(message.attachments or [])   # the bytes are not kept
    if outcome.status == TxStatus.SENT:
        message.sent_at = now
        session.add(Event(contact_id=message.contact_id, campaign_id=message.campaign_id, type=EventType.SENT,
                          occurred_at=now, data={"source": "transactional API", "message_id": message.public_id,
                                                 "subject": message.subject[:200]}))
    elif outcome.status == TxStatus.BOUNCED and message.contact_id:
        rejections.record(session, rt.settings, rejections.Rejection(
            send_id=0, contact_id=message.contact_id, campaign_id=message.campaign_id or 0, code=outcome.code,
            message=outcome.reply))
    logger.info("transactional %s to contact %s: %s %s", message.public_id, message.contact_id, outcome.status,
                outcome.reason)


def resume_due(rt: Runtime, grace: float = 60.0) -> int:
    """Settle messages a dead worker left sending, and queue again the messages still queued well after they were
    due (a job lost with Redis, a retry whose delayed job vanished); taking a message is exclusive, so one queued
    twice is still sent once."""
    cutoff = utcnow() - dt.timedelta(seconds=grace)
    with rt.session_factory() as session:
        # A worker that died while sending: whether the relay got the message cannot be known.
        session.execute(update(TxMessage).where(
            TxMessage.status == TxStatus.SENDING, TxMessage.updated_at < utcnow() - STUCK)
            .values(status=TxStatus.UNKNOWN, reason="the worker stopped while sending; the relay may have it",
                    updated_at=utcnow()))
        session.commit()
        ids = list(session.scalars(select(TxMessage.id).where(
            TxMessage.status == TxStatus.QUEUED, TxMessage.created_at < cutoff,
            (TxMessage.next_attempt_at.is_(None)) | (TxMessage.next_attempt_at < cutoff)).limit(1000)))
    for tx_id in ids:
        enqueue(rt.tx_queue, tx_id)
    return len(ids)
