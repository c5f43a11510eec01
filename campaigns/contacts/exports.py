"""Contact exports: the CSV export's columns (export_jobs writes it), GDPR export and erasure of one contact."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from campaigns.contacts import birthdays
from campaigns.contacts.consent_proof import consent_records
from campaigns.contacts.records import get_contact
from campaigns.contacts.suppression import suppress
from campaigns.models import (
    ContactInterest,
    DrawEntry,
    Event,
    Note,
    Order,
    PostLetter,
    PostOptOut,
    Reply,
    Send,
    Subscription,
    SuppressionReason,
    TierChange,
    Topic,
    TxMessage,
)

logger = logging.getLogger(__name__)

CSV_FIELDS = ("email", "first_name", "last_name", "phone", "address_line1", "address_line2", "postal_code", "city",
              "region", "country", "birthday", "timezone", "locale", "status", "consent_source", "consent_at",
              "created_at")


def _plain(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        value = getattr(obj, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else \
            str(value) if value is not None and not isinstance(value, int | float | bool | str | dict) else value
    return out


def gdpr_export(session: Session, contact_id: int) -> dict[str, Any]:
    """Everything stored about one contact, as JSON-ready data (Art. 15 / 20 GDPR)."""
    c = get_contact(session, contact_id)
    profile = _plain(c, ("id", "email", "first_name", "last_name", "phone", "address_line1", "address_line2",
                         "postal_code", "city", "region", "country", "birthday", "timezone", "locale", "status",
                         "consent_source", "consent_at", "created_at", "updated_at", "last_sent_at",
                         "last_opened_at", "last_clicked_at", "engagement_score", "frequency", "paused_until",
                         "tier"))
    profile["birthday"] = birthdays.text(c.birthday) or None
    subs = session.execute(select(Subscription, Topic.name).join(Topic).where(Subscription.contact_id == c.id))
    return {
        "profile": profile,
        "attributes": dict(c.attributes or {}),
        "interests": sorted(i.interest for i in c.interests),
        "subscriptions": [{"topic": name, "subscribed": s.subscribed, "updated_at": s.updated_at.isoformat()}
                          for s, name in subs],
        "orders": [_plain(o, ("id", "ordered_at", "amount", "currency", "reference")) for o in c.orders],
        "events": [_plain(e, ("id", "type", "occurred_at", "campaign_id", "send_id", "data", "machine"))
                   for e in session.scalars(select(Event).where(Event.contact_id == c.id).order_by(Event.id))],
        "sends": [_plain(s, ("id", "campaign_id", "status", "attempts", "created_at", "sent_at", "last_error"))
                  for s in session.scalars(select(Send).where(Send.contact_id == c.id).order_by(Send.id))],
        "signups": consent_records(session, c.id),
        "notes": [_plain(n, ("id", "created_at", "author_name", "body", "pinned", "updated_at", "updated_by"))
                  for n in session.scalars(select(Note).where(Note.contact_id == c.id).order_by(Note.id))],
        "letters": [_plain(p, ("run_id", "sent_at", "coupon_code"))
                    for p in session.scalars(select(PostLetter).where(PostLetter.contact_id == c.id))],
        "no_post": session.get(PostOptOut, c.id) is not None,
        "replies": [_plain(r, ("id", "received_at", "campaign_id", "auto", "status", "from_name", "from_email",
                               "subject", "text", "original_text", "answer_text", "answered_at"))
                    for r in session.scalars(select(Reply).where(Reply.contact_id == c.id).order_by(Reply.id))],
        "tier_changes": [_plain(t, ("changed_at", "from_tier", "to_tier", "reason"))
                         for t in session.scalars(select(TierChange).where(TierChange.contact_id == c.id)
                                                  .order_by(TierChange.id))],
        "draw_entries": [_plain(d, ("draw_id", "ref", "source", "entered_at", "winner_rank"))
                         for d in session.scalars(select(DrawEntry).where(DrawEntry.contact_id == c.id)
                                                  .order_by(DrawEntry.id))],
        "transactional_messages": [
            _plain(m, ("public_id", "campaign_id", "email", "subject", "variables", "status", "reason", "created_at",
                       "sent_at"))
            for m in session.scalars(select(TxMessage).where(TxMessage.contact_id == c.id).order_by(TxMessage.id))],
    }


def erase_contact(session: Session, contact_id: int, *, by: str = "") -> None:
    """Delete the contact and everything about it, keeping only the suppression hash so it is never mailed again.

    Flushes; the caller commits (the admin view commits it together with its audit entry).
    """
    c = get_contact(session, contact_id)
    suppress(session, c.email, SuppressionReason.MANUAL, f"erased (GDPR){' by ' + by if by else ''}")
    # Explicit deletes: SQLite only cascades when foreign keys are enforced.
    for model in (Event, Send, Order, ContactInterest, Subscription, Note, PostLetter, PostOptOut, Reply,
                  TierChange, TxMessage):
        session.execute(delete(model).where(model.contact_id == c.id))
    # A prize draw entry loses its contact but keeps its opaque reference: the published draw stays verifiable.
    session.execute(update(DrawEntry).where(DrawEntry.contact_id == c.id).values(contact_id=None))
    # The contact row itself goes through the unit of work, not a bulk statement: a deleted Contact is what the
    # session's stop listener (campaigns.stops) tells running sends about at flush, before any commit.
    session.expire(c)
    session.delete(c)
    session.flush()
    logger.info("contact %s erased", contact_id)
