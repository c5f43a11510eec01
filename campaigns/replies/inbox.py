"""The Replies inbox: replies listed by status (open, answered, archived, auto-replies), filtered by campaign and
by the contact's owner; a reply's status changed; an answer written in the admin and owed to the contact (sent by
campaigns.replies.mail). Nothing here commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.contacts.suppression import suppressed_status
from campaigns.errors import NotFound, ValidationError
from campaigns.models import Campaign, Contact, MailState, Reply, ReplyStatus, Sender, utcnow

PAGE = 50
MAX_ANSWER = 20_000
VIEWS = ("open", "answered", "archived", "auto")   # "auto": auto-replies, whatever their status


@dataclass(frozen=True)
class Row:
    """One line of the inbox."""

    reply: Reply
    contact: Contact | None
    campaign_name: str
    owner_name: str


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    counts: dict[str, int]
    next_before: int | None


def _view_filter(view: str):
    if view == "auto":
        return Reply.auto.is_(True)
    return (Reply.auto.is_(False)) & (Reply.status == ReplyStatus(view))


def listing(session: Session, *, view: str = "open", campaign_id: int | None = None, owner_id: int | None = None,
            before: int | None = None, limit: int = PAGE) -> Page:
    """A page of the inbox, newest first (keyset on id), and how many replies each view holds (same filters)."""
    if view not in VIEWS:
        raise ValidationError(f"view must be one of {', '.join(VIEWS)}", field="view")
    conds = []
    if campaign_id is not None:
        conds.append(Reply.campaign_id == campaign_id)
    if owner_id is not None:
        conds.append(Reply.contact_id.in_(select(Contact.id).where(Contact.owner_id == owner_id)))
    stmt = (select(Reply, Contact, Campaign.name, Sender.name)
            .outerjoin(Contact, Contact.id == Reply.contact_id)
            .outerjoin(Campaign, Campaign.id == Reply.campaign_id)
            .outerjoin(Sender, Sender.id == Contact.owner_id)
            .where(_view_filter(view), *conds).order_by(Reply.id.desc()).limit(limit + 1))
    if before is not None:
        stmt = stmt.where(Reply.id < before)
    found = session.execute(stmt).all()
    rows = [Row(r, c, name or "", owner or "") for r, c, name, owner in found[:limit]]
    counts = {v: session.scalar(select(func.count(Reply.id)).where(_view_filter(v), *conds)) or 0 for v in VIEWS}
    return Page(rows, counts, rows[-1].reply.id if len(found) > limit and rows else None)


def get_reply(session: Session, reply_id: int) -> Reply:
    reply = session.get(Reply, reply_id)
    if reply is None:
        raise NotFound("reply not found")
    return reply


def set_status(session: Session, reply_id: int, status: str) -> Reply:
    """Move a reply to open, answered or archived."""
    reply = get_reply(session, reply_id)
    try:
        reply.status = ReplyStatus(status)
    except ValueError:
        raise ValidationError("status must be open, answered or archived", field="status") from None
    return reply


def answer_senders(session: Session, reply: Reply) -> tuple[list[Sender], int | None]:
    """Who an answer can come from, and the default: the contact's owner."""
    senders = list(session.scalars(select(Sender).order_by(Sender.name)))
    contact = session.get(Contact, reply.contact_id) if reply.contact_id else None
    return senders, contact.owner_id if contact is not None else None


def write_answer(session: Session, reply_id: int, data: Mapping[str, Any], *, written_by: str) -> Reply:
    """Check the answer form (sender_id, message) and owe the answer; campaigns.replies.mail sends it."""
    reply = get_reply(session, reply_id)
    if reply.answer_state in (MailState.PENDING, MailState.SENT):
        raise ValidationError("this reply has been answered already; write to the contact from their page")
    contact = session.get(Contact, reply.contact_id) if reply.contact_id else None
    if contact is None:
        raise ValidationError("the contact of this reply no longer exists")
    suppressed = suppressed_status(session, contact.email)
    if suppressed is not None:
        raise ValidationError(f"{contact.email} is on the suppression list ({suppressed}): no mail goes to it")
    try:
        sender = session.get(Sender, int(str(data.get("sender_id", "")).strip()))
    except ValueError:
        sender = None
    if sender is None:
        raise ValidationError("choose who the answer comes from", field="sender_id")
    message = str(data.get("message", "")).strip()
    if not message or len(message) > MAX_ANSWER:
        raise ValidationError(f"write the answer (at most {MAX_ANSWER:,} characters)", field="message")
    reply.answer_text, reply.answer_sender_id = message, sender.id
    reply.answered_by, reply.answered_at = written_by[:200], utcnow()
    reply.answer_state, reply.mail_attempts, reply.last_error = MailState.PENDING, 0, ""
    return reply
