"""Bounces and complaints applied to the contact list, whatever reported them (an SMTP rejection at send time, a
DSN or ARF report, a relay's webhook), and the matching of a report to the send (or transactional message) it is
about.

Rules: a hard bounce suppresses at once; soft bounces suppress once BouncePolicy.soft_limit of them arrived within
BouncePolicy.window; a complaint unsubscribes and suppresses (campaigns.contacts.suppression). Each report is an
event with a dedupe key, so a report read twice counts once. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.config import Settings
from campaigns.contacts.suppression import suppress
from campaigns.models import (
    TX_FINAL,
    Contact,
    ContactStatus,
    Event,
    EventType,
    Send,
    SuppressionReason,
    TxMessage,
    TxStatus,
    utcnow,
)
from campaigns.sending import rejections
from mailer.bounces import FeedbackKind, classify_smtp_reply
from mailer.relays import BounceType
from mailer.tracking import InvalidToken, Purpose, TokenCodec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BouncePolicy:
    """How many soft bounces within what window suppress an address."""

    soft_limit: int = 3
    window: dt.timedelta = dt.timedelta(days=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> BouncePolicy:
        """RAPPORT_SOFT_BOUNCE_LIMIT and RAPPORT_SOFT_BOUNCE_WINDOW_DAYS, via Settings."""
        return cls(soft_limit=settings.soft_bounce_limit,
                   window=dt.timedelta(days=settings.soft_bounce_window_days))


class OutcomeKind(StrEnum):
    """What one piece of feedback did (the CLI prints it, the webhook endpoint answers it per event)."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"     # counted; suppressed only when Outcome.suppressed says so
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    IGNORED = "ignored"             # nothing to apply (detail says why)
    DUPLICATE = "duplicate"         # applied before
    PROBE = "probe"                 # `rapport check-mail-setup` testing the route
    REPLY = "reply"                 # a person answered (campaigns.replies); detail: the reply's id
    AUTO_REPLY = "auto_reply"       # an out-of-office or other automatic answer, recorded as such


# A bounce event's data["kind"]: hard bounces suppress at once, soft ones after BouncePolicy.soft_limit.
BounceKind = BounceType


class FeedbackSource(StrEnum):
    """Where a bounce, complaint or unsubscribe came from (the event's data["source"])."""

    SMTP = "smtp"           # the relay refused the message at send time
    DSN = "dsn"             # a delivery status notification came back
    ARF = "arf"             # a feedback-loop complaint report
    WEBHOOK = "webhook"     # a relay's webhook
    MAILTO = "mailto"       # a mailto List-Unsubscribe message


@dataclass(frozen=True)
class Outcome:
    """What one piece of feedback did."""

    kind: OutcomeKind
    contact_id: int | None = None
    suppressed: bool = False
    detail: str = ""


def add_event(session: Session, event: Event) -> bool:
    """Insert an event unless its dedupe_key is known; False for a duplicate. Uses a savepoint, no commit."""
    if event.dedupe_key and session.scalar(select(Event.id).where(Event.dedupe_key == event.dedupe_key)):
        return False
    try:
        with session.begin_nested():
            session.add(event)
    except IntegrityError:   # the same report, ingested concurrently
        return False
    return True


def apply_bounce(session: Session, contact: Contact, *, hard: bool, send_id: int | None, campaign_id: int | None,
                 source: str, status: str | None = None, code: int | None = None, diagnostic: str = "",
                 dedupe_key: str | None = None, policy: BouncePolicy | None = None,
                 now: dt.datetime | None = None, tx_id: int | None = None) -> Outcome:
    """Record a bounce and suppress when the rules say so; a bounce of a transactional message (tx_id) makes it
    `bounced`. Does not commit."""
    policy = policy or BouncePolicy()
    now = now or utcnow()
    kind = BounceKind.HARD if hard else BounceKind.SOFT
    if dedupe_key is None and send_id:
        dedupe_key = f"bounce:{send_id}:{kind}"   # one message counts once, however it is reported
    elif dedupe_key is None and tx_id:
        dedupe_key = f"bounce:tx{tx_id}:{kind}"
    event = Event(contact_id=contact.id, campaign_id=campaign_id, send_id=send_id, type=EventType.BOUNCE,
                  occurred_at=now, dedupe_key=dedupe_key, tx_message_id=tx_id,
                  data={"kind": kind, "status": status, "code": code, "diagnostic": (diagnostic or "")[:500],
                        "source": source})
    if not add_event(session, event):
        return Outcome(OutcomeKind.DUPLICATE, contact.id)
    if send_id and source != FeedbackSource.SMTP:
        _mark_bounced_later(session, send_id, kind, status, code, diagnostic)
    if tx_id and source != FeedbackSource.SMTP:
        _mark_tx_bounced(session, tx_id, kind, status, code, diagnostic)
    if not hard:
        since = now - policy.window
        recent = [d for d in session.scalars(select(Event.data).where(
            Event.contact_id == contact.id, Event.type == EventType.BOUNCE, Event.occurred_at >= since))
            if (d or {}).get("kind") == BounceKind.SOFT]
        if len(recent) < policy.soft_limit:
            logger.info("contact %s soft bounce %d of %d (campaign_id=%s)", contact.id, len(recent),
                        policy.soft_limit, campaign_id)
            _hook(session, webhook_events.EventType.EMAIL_BOUNCED, contact, campaign_id, send_id, event.data,
                  suppressed=False)
            return Outcome(OutcomeKind.SOFT_BOUNCE, contact.id, False, f"{len(recent)} of {policy.soft_limit}")
    if contact.status != ContactStatus.COMPLAINED:
        contact.status = ContactStatus.BOUNCED
    suppress(session, contact.email, SuppressionReason.HARD_BOUNCE if hard else SuppressionReason.SOFT_BOUNCE,
             f"{source} {status or code or ''}".strip())
    logger.info("contact %s suppressed after %s bounce (campaign_id=%s)", contact.id, kind, campaign_id)
    _hook(session, webhook_events.EventType.EMAIL_BOUNCED, contact, campaign_id, send_id, event.data, suppressed=True)
    return Outcome(OutcomeKind.HARD_BOUNCE if hard else OutcomeKind.SOFT_BOUNCE, contact.id, True)


def _hook(session: Session, type_: webhook_events.EventType, contact: Contact, campaign_id: int | None,
          send_id: int | None, details: dict, *, suppressed: bool) -> None:
    """The outgoing webhook of a bounce or complaint (written only when an endpoint wants it)."""
    webhook_events.record(session, type_, {"contact": {"id": contact.id, "email": contact.email},
                                           "campaign_id": campaign_id, "send_id": send_id, "suppressed": suppressed,
                                           **details})


def _mark_bounced_later(session: Session, send_id: int, kind: str, status: str | None, code: int | None,
                        diagnostic: str) -> None:
    """A report that arrived after the relay accepted the message: the send row shows it instead of "250".

    The status stays what it was (the relay did accept the message; reports count it as sent, then bounced).
    """
    send = session.get(Send, send_id)
    if send is None:
        return
    if code is not None:
        send.smtp_code = code
    detail = " ".join(p for p in (status or "", (diagnostic or "").strip()) if p)
    send.last_error = f"{kind} bounce reported later: {detail}"[:1000] if detail else f"{kind} bounce reported later"


def _mark_tx_bounced(session: Session, tx_id: int, kind: str, status: str | None, code: int | None,
                     diagnostic: str) -> None:
    """A transactional message the relay accepted, reported bounced later (DSN, relay webhook): it did not arrive,
    so its status becomes `bounced`, with the report's code and words."""
    message = session.get(TxMessage, tx_id)
    if message is None or message.status not in TX_FINAL:
        return
    detail = " ".join(p for p in (status or "", (diagnostic or "").strip()) if p)
    message.status = TxStatus.BOUNCED
    message.reason = (f"{kind} bounce reported after the relay accepted it: {detail}" if detail
                      else f"{kind} bounce reported after the relay accepted it")[:1000]
    if code is not None:
        message.smtp_code = code
    message.updated_at = utcnow()


def apply_complaint(session: Session, contact: Contact, *, send_id: int | None, campaign_id: int | None,
                    source: str, feedback_type: str | None = None, dedupe_key: str | None = None,
                    now: dt.datetime | None = None, tx_id: int | None = None) -> Outcome:
    """A spam complaint: unsubscribe from everything, mark complained, suppress. Does not commit."""
    now = now or utcnow()
    if dedupe_key is None:
        dedupe_key = f"complaint:{send_id}" if send_id else f"complaint:tx{tx_id}" if tx_id else None
    event = Event(contact_id=contact.id, campaign_id=campaign_id, send_id=send_id, type=EventType.COMPLAINT,
                  occurred_at=now, dedupe_key=dedupe_key, tx_message_id=tx_id,
                  data={"source": source, "feedback_type": feedback_type or "abuse"})
    if not add_event(session, event):
        return Outcome(OutcomeKind.DUPLICATE, contact.id)
    if contact.status in (ContactStatus.SUBSCRIBED, ContactStatus.PENDING):
        session.add(Event(contact_id=contact.id, campaign_id=campaign_id, type=EventType.UNSUBSCRIBE,
                          occurred_at=now, data={"scope": "all", "topics": [], "source": "complaint"}))
    contact.status = ContactStatus.COMPLAINED
    suppress(session, contact.email, SuppressionReason.COMPLAINT, source)
    logger.info("contact %s complained (campaign_id=%s): unsubscribed and suppressed", contact.id, campaign_id)
    _hook(session, webhook_events.EventType.EMAIL_COMPLAINED, contact, campaign_id, send_id, event.data,
          suppressed=True)
    return Outcome(OutcomeKind.COMPLAINT, contact.id, True)


def record_smtp_rejection(session: Session, *, send_id: int, contact_id: int, campaign_id: int,
                          code: int | None, message: str, policy: BouncePolicy | None = None) -> None:
    """A relay refused a message at send time: hard -> suppress the contact; soft -> count towards the limit.

    Called by the send path after it marked the send row failed; the send path commits both together.
    """
    kind = classify_smtp_reply(code, message or "")
    contact = session.get(Contact, contact_id)
    if contact is None or kind not in (FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE):
        return
    apply_bounce(session, contact, hard=kind == FeedbackKind.HARD_BOUNCE, send_id=send_id,
                 campaign_id=campaign_id, source=FeedbackSource.SMTP, code=code, diagnostic=message, policy=policy)


# ---------------------------------------------------------------- matching a report to its send

_MSGID_TOKEN = re.compile(r"<([A-Za-z0-9_-]{24,120})@")


@dataclass(frozen=True)
class Match:
    """The send or transactional message (when known) and contact a piece of feedback is about."""

    contact: Contact
    send_id: int | None
    campaign_id: int | None
    tx_id: int | None = None      # a transactional message (tx_message.id); send_id is None then


def _send_of(session: Session, tokens: TokenCodec, token: str | None) -> Send | None:
    if not token:
        return None
    try:
        (send_id,) = tokens.open(Purpose.MESSAGE, token)
    except InvalidToken:
        return None
    return session.get(Send, send_id) if send_id else None


def _tx_of(session: Session, tokens: TokenCodec, token: str | None) -> TxMessage | None:
    if not token:
        return None
    try:
        (tx_id,) = tokens.open(Purpose.TX_MESSAGE, token)
    except InvalidToken:
        return None
    return session.get(TxMessage, tx_id)


def match_feedback(session: Session, tokens: TokenCodec, token: str | None, message_id: str | None,
                   recipient: str | None) -> Match | None:
    """The send (or transactional message) a sealed MESSAGE (TX_MESSAGE) token or our Message-ID names, else the
    contact with that address, else None."""
    m = _MSGID_TOKEN.match(message_id or "")
    msgid_token = m.group(1) if m else None
    send = _send_of(session, tokens, token) or _send_of(session, tokens, msgid_token)
    if send is not None:
        contact = session.get(Contact, send.contact_id)
        return Match(contact, send.id, send.campaign_id) if contact is not None else None
    tx = _tx_of(session, tokens, token) or _tx_of(session, tokens, msgid_token)
    if tx is not None and tx.contact_id:
        contact = session.get(Contact, tx.contact_id)
        return Match(contact, None, tx.campaign_id, tx.id) if contact is not None else None
    if recipient:
        contact = session.scalar(select(Contact).where(Contact.email == recipient.strip().lower()))
        if contact is not None:
            return Match(contact, None, None)
    return None


def _record_rejection(session: Session, settings: Settings, rejection: rejections.Rejection) -> None:
    """The send path's refused messages as bounces (registered below: sending does not import feedback)."""
    record_smtp_rejection(session, send_id=rejection.send_id, contact_id=rejection.contact_id,
                          campaign_id=rejection.campaign_id, code=rejection.code, message=rejection.message,
                          policy=BouncePolicy.from_settings(settings))


rejections.on_rejection("bounces", _record_rejection)
