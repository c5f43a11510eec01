"""Outgoing webhooks of tracking hits: email.opened and email.clicked, human only unless an endpoint asks for
machines too (campaigns.webhook_events decides; nothing is written when no endpoint wants them)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.models import EventType


def opens_and_clicks(session: Session, events: list[dict]) -> None:
    """Record the webhooks of a batch of open/click event rows (as engagement.record_hits inserts them)."""
    for type_, hook in ((EventType.OPEN, webhook_events.EventType.EMAIL_OPENED),
                        (EventType.CLICK, webhook_events.EventType.EMAIL_CLICKED)):
        webhook_events.record_many(session, hook, (
            ({"contact": {"id": e["contact_id"]}, "campaign_id": e["campaign_id"], "send_id": e["send_id"],
              "occurred_at": e["occurred_at"], "machine": e["machine"],
              **({"url": e["data"].get("url", "")} if type_ == EventType.CLICK else {})}, e["machine"])
            for e in events if e["type"] == type_))
