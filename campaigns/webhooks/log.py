"""The delivery log of an endpoint, replaying deliveries, and the "send test event" button."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from campaigns import webhook_events
from campaigns.config import Settings
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, utcnow
from campaigns.webhook_events import EventType

PAGE = 50


def deliveries(session: Session, endpoint_id: int, *, status: str = "", before: int | None = None,
               limit: int = PAGE) -> list[WebhookDelivery]:
    """The endpoint's deliveries, newest first (keyset pages by id), optionally of one status."""
    query = (select(WebhookDelivery).options(joinedload(WebhookDelivery.event))
             .where(WebhookDelivery.endpoint_id == endpoint_id).order_by(WebhookDelivery.id.desc()).limit(limit))
    if status:
        if status not in {s.value for s in DeliveryStatus}:
            raise ValidationError(f"Unknown status {status!r}.", field="status")
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query))


def get_delivery(session: Session, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint_id:
        raise NotFound("No such delivery.")
    return delivery


def _again(settings: Settings, now: dt.datetime) -> dict:
    return {"status": DeliveryStatus.PENDING.value, "next_attempt_at": now, "claim": "", "claimed_until": None,
            "retry_until": now + dt.timedelta(seconds=settings.webhook_give_up_after)}


def replay(session: Session, settings: Settings, delivery: WebhookDelivery) -> None:
    """Post this delivery again now (same webhook-id and body, a fresh signature and a new 24-hour window)."""
    now = utcnow()
    if delivery.claim and delivery.claimed_until is not None and delivery.claimed_until > now:
        raise InvalidState("This delivery is being posted right now.")
    for name, value in _again(settings, now).items():
        setattr(delivery, name, value)
    _wake(session, delivery.endpoint_id)
    session.flush()


def replay_failed_since(session: Session, settings: Settings, endpoint_id: int, since: dt.datetime) -> int:
    """Post again every failed delivery of the endpoint created since `since`; returns how many."""
    result = session.execute(update(WebhookDelivery)
                             .where(WebhookDelivery.endpoint_id == endpoint_id,
                                    WebhookDelivery.status == DeliveryStatus.FAILED,
                                    WebhookDelivery.created_at >= since)
                             .values(**_again(settings, utcnow())))
    _wake(session, endpoint_id)
    return result.rowcount or 0


def _wake(session: Session, endpoint_id: int) -> None:
    """An operator asked for a replay: the endpoint's rest after a failure does not delay it."""
    session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(paused_until=None))


def send_test(session: Session, endpoint: WebhookEndpoint) -> None:
    """Put a webhook.test event in the outbox for this endpoint only (posted within moments by the worker)."""
    if not endpoint.enabled:
        raise InvalidState("Enable the endpoint first: a disabled endpoint receives nothing.")
    webhook_events.record(session, EventType.TEST, {"endpoint_id": endpoint.id, "message": "Test event from Rapport"},
                          endpoint_id=endpoint.id)
