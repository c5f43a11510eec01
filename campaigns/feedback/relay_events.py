"""Relay webhooks: one event in Rapport's normalized format (docs/webhooks.md) applied — bounces and complaints
through campaigns.feedback.bounces, deliveries as events, opens and clicks onto the tracking-hit queue.

Relays' native payloads are translated to this format before they get here; the endpoint authenticates them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.errors import ValidationError
from campaigns.feedback import hits
from campaigns.feedback.bounces import (
    BounceKind,
    BouncePolicy,
    FeedbackSource,
    Outcome,
    OutcomeKind,
    add_event,
    apply_bounce,
    apply_complaint,
    match_feedback,
)
from campaigns.models import Event, EventType, Link, utcnow
from campaigns.runtime import Runtime
from mailer.relays.base import APPLICABLE, RelayEventType

WEBHOOK_TYPES = APPLICABLE    # the event types the normalized format applies (mailer.relays: one vocabulary)


class BadEvent(ValidationError):
    """A webhook event that does not follow the normalized format (docs/webhooks.md)."""


def _when(value: object) -> dt.datetime:
    if value in (None, ""):
        return utcnow()
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        if isinstance(value, str) and len(value) <= 40:
            at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise BadEvent("timestamp must be ISO 8601 or unix seconds")


def _text(event: Mapping, name: str, limit: int) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadEvent(f"{name} must be a string of at most {limit} characters")
    return value


def apply_relay_event(session: Session, rt: Runtime, event: object,
                      policy: BouncePolicy | None = None) -> Outcome:
    """Apply one normalized relay event (docs/webhooks.md); raises BadEvent on malformed input.

    The caller commits each applied event, and rolls back after a BadEvent.
    """
    if not isinstance(event, Mapping):
        raise BadEvent("each event must be a JSON object")
    kind = event.get("type")
    if kind not in WEBHOOK_TYPES:
        raise BadEvent(f"type must be one of {', '.join(WEBHOOK_TYPES)}")
    rapport_id = _text(event, "rapport_id", 200)
    message_id = _text(event, "message_id", 998)
    recipient = _text(event, "recipient", 320)
    relay_id = _text(event, "id", 200)
    at = _when(event.get("timestamp"))
    match = match_feedback(session, rt.tokens, rapport_id, message_id, recipient)
    if match is None:
        return Outcome(OutcomeKind.IGNORED, detail="no matching send or contact")
    key = "wh:" + hashlib.sha256(relay_id.encode()).hexdigest()[:40] if relay_id else None
    if kind == RelayEventType.BOUNCE:
        bounce_type = event.get("bounce_type", BounceKind.HARD)
        if bounce_type not in set(BounceKind):
            raise BadEvent("bounce_type must be hard or soft")
        code = event.get("smtp_code")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599):
            raise BadEvent("smtp_code must be an integer SMTP reply code")
        out = apply_bounce(session, match.contact, hard=bounce_type == BounceKind.HARD, send_id=match.send_id,
                           campaign_id=match.campaign_id, tx_id=match.tx_id, source=FeedbackSource.WEBHOOK,
                           status=_text(event, "status", 11), code=code,
                           diagnostic=_text(event, "diagnostic", 1000) or "",
                           dedupe_key=None if match.send_id or match.tx_id else key, policy=policy, now=at)
    elif kind == RelayEventType.COMPLAINT:
        out = apply_complaint(session, match.contact, send_id=match.send_id, campaign_id=match.campaign_id,
                              tx_id=match.tx_id, source=FeedbackSource.WEBHOOK,
                              feedback_type=_text(event, "feedback_type", 64),
                              dedupe_key=None if match.send_id or match.tx_id else key, now=at)
    elif kind == RelayEventType.DELIVERED:
        added = add_event(session, Event(
            contact_id=match.contact.id, campaign_id=match.campaign_id, send_id=match.send_id,
            type=EventType.DELIVERED, occurred_at=at, data={"source": FeedbackSource.WEBHOOK},
            dedupe_key=f"delivered:{match.send_id}" if match.send_id else key))
        out = Outcome(OutcomeKind.DELIVERED if added else OutcomeKind.DUPLICATE, match.contact.id)
    else:
        if not match.send_id and not match.tx_id:
            return Outcome(OutcomeKind.IGNORED, detail="opens and clicks need rapport_id or message_id")
        link_id = 0
        if kind == RelayEventType.CLICK:
            url = _text(event, "url", 2000) or ""
            link_id = session.scalar(select(Link.id).where(Link.campaign_id == match.campaign_id,
                                                           Link.url == url)) or 0
            if not link_id:
                return Outcome(OutcomeKind.IGNORED, detail="url is not a link of this campaign")
        hits.push(rt, hits.Hit(kind=hits.HitKind(kind), send_id=match.send_id or 0, link_id=link_id,
                               at=at.timestamp(), tx_id=match.tx_id or 0,
                               user_agent=_text(event, "user_agent", 300) or "", ip=_text(event, "ip", 64) or "",
                               source=hits.HitSource.RELAY, key=key or hits.new_key()))
        return Outcome(OutcomeKind(kind), match.contact.id)
    return out
