"""Inbound replies matched to their contact and campaign and recorded: the Reply row, a `reply` (or `auto_reply`)
event on the contact's timeline, the engagement score (a human reply is the strongest signal) and a forward owed to
the contact's owner.

Matching, first that works: the sealed REPLY token of the reply+TOKEN@ address the message was sent to, the sealed
MESSAGE token of one of our Message-IDs it names in In-Reply-To/References, then the From address. When the token
names one contact's message but another known contact wrote (the mail was forwarded to a colleague), the reply is the
writer's, about that campaign. A token that does
not open (forged, garbled, re-spelled) is simply not a match; a reply nobody can be found for is refused (logged,
not stored), so mail from strangers to a guessed address never fills the inbox. Nothing here commits.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.feedback.bounces import Outcome, OutcomeKind, add_event
from campaigns.feedback.engagement import WEIGHTS, add_to_score
from campaigns.models import Contact, Event, EventType, MailState, Reply, ReplyStatus, Send, utcnow
from campaigns.replies.reading import InboundReply, read_reply
from mailer.tracking import InvalidToken, Purpose, TokenCodec

logger = logging.getLogger(__name__)

_MSGID_TOKEN = re.compile(r"<([A-Za-z0-9_-]{16,120})@")
TIMELINE_TEXT = 300          # characters of the new text the timeline event keeps
# Precedence values of bulk and list mail: answered automatically if at all, never by a person.
_AUTO_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")


@dataclass(frozen=True)
class Matched:
    """Whom a reply is from and what it answers."""

    contact: Contact
    send_id: int | None
    campaign_id: int | None
    by: str


def _send(session: Session, tokens: TokenCodec, purpose: Purpose, token: str) -> Send | None:
    try:
        (send_id,) = tokens.open(purpose, token)
    except InvalidToken:
        return None
    return session.get(Send, send_id) if send_id else None


def is_reply(tokens: TokenCodec, reply: InboundReply) -> bool:
    """The message answers our mail: it went to a reply address or names one of our Message-IDs."""
    if reply.reply_tokens:
        return True
    for ref in reply.references[-10:]:
        m = _MSGID_TOKEN.match(ref)
        if m is not None:
            try:
                tokens.open(Purpose.MESSAGE, m.group(1))
                return True
            except InvalidToken:
                continue
    return False


def match(session: Session, tokens: TokenCodec, reply: InboundReply) -> Matched | None:
    """The contact (and send) a reply is from; None when nobody is found."""
    candidates = [(Purpose.REPLY, t, "token") for t in reply.reply_tokens]
    candidates += [(Purpose.MESSAGE, m.group(1), "message-id") for ref in reversed(reply.references[-10:])
                   if (m := _MSGID_TOKEN.match(ref)) is not None]
    sender = session.scalar(select(Contact).where(Contact.email == reply.from_email)) if reply.from_email else None
    for purpose, token, by in candidates:
        send = _send(session, tokens, purpose, token)
        if send is not None:
            if sender is not None and sender.id != send.contact_id:
                # Another contact answered a message forwarded to them: their reply, about that campaign.
                return Matched(sender, None, send.campaign_id, "from")
            contact = session.get(Contact, send.contact_id)
            if contact is not None:
                return Matched(contact, send.id, send.campaign_id, by)
    return Matched(sender, None, None, "from") if sender is not None else None


def receive(session: Session, tokens: TokenCodec, raw: bytes, *, envelope_recipient: str | None = None,
            auto: bool = False) -> Outcome | None:
    """Record raw as a reply when it is one (None when it answers none of our mail); auto: the classifier saw an
    auto-reply. Reading the same message twice records it once (DUPLICATE)."""
    reply = read_reply(raw, envelope_recipient)
    if not is_reply(tokens, reply):
        return None
    auto = auto or reply.precedence in _AUTO_PRECEDENCE
    key = "reply:" + hashlib.sha256(raw).hexdigest()[:58]
    found = match(session, tokens, reply)
    if found is None:
        logger.warning("reply from %s matched no contact (tokens %d, references %d); not stored",
                       reply.from_email or "an unknown sender", len(reply.reply_tokens), len(reply.references))
        return Outcome(OutcomeKind.IGNORED, detail="reply matched no contact")
    existing = session.scalar(select(Reply.id).where(Reply.dedupe_key == key))
    if existing is not None:
        return Outcome(OutcomeKind.DUPLICATE, found.contact.id, detail=str(existing))
    now = utcnow()
    row = Reply(contact_id=found.contact.id, campaign_id=found.campaign_id, send_id=found.send_id,
                matched_by=found.by, auto=auto, status=ReplyStatus.ARCHIVED if auto else ReplyStatus.OPEN,
                from_name=reply.from_name, from_email=reply.from_email or found.contact.email,
                subject=reply.subject, message_id=reply.message_id, references=" ".join(reply.references),
                text=reply.text, original_text=reply.original_text, original_html=reply.original_html,
                received_at=now, dedupe_key=key,
                forward_state=MailState.NONE if auto else MailState.PENDING)
    session.add(row)
    session.flush()
    kind = EventType.AUTO_REPLY if auto else EventType.REPLY
    add_event(session, Event(contact_id=found.contact.id, campaign_id=found.campaign_id, send_id=found.send_id,
                             type=kind, occurred_at=now, dedupe_key=key,
                             data={"reply_id": row.id, "subject": reply.subject[:200],
                                   "text": reply.text[:TIMELINE_TEXT]}))
    if not auto:
        add_to_score(found.contact, WEIGHTS[EventType.REPLY], now)
    logger.info("%s from contact %s (campaign_id=%s, matched by %s)", kind, found.contact.id, found.campaign_id,
                found.by)
    return Outcome(OutcomeKind.AUTO_REPLY if auto else OutcomeKind.REPLY, found.contact.id, detail=str(row.id))
