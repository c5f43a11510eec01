"""Endpoints: add, change, enable, disable, delete, rotate the secret; and the notice of auto-disabled ones."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.config import Settings
from campaigns.errors import NotFound, ValidationError
from campaigns.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, utcnow
from campaigns.webhook_events import SUBSCRIBABLE
from campaigns.webhooks import signing, transport


@dataclass(frozen=True)
class Saved:
    endpoint: WebhookEndpoint
    secret: str = ""        # set when a secret was made: shown once


def _clean(settings: Settings, url: str, description: str, event_types: Iterable[str]) -> tuple[str, str, list[str]]:
    url = url.strip()
    if not url:
        raise ValidationError("Enter the URL the events are posted to.", field="url")
    if len(url) > 2000:
        raise ValidationError("The URL is longer than 2,000 characters.", field="url")
    _scheme, host, port, _path = transport.check_url(url)
    transport.resolve(host, port, settings.webhooks_allow_private)
    known = {str(t) for t in SUBSCRIBABLE}
    chosen = sorted({str(t) for t in event_types})
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise ValidationError(f"Unknown event types: {', '.join(unknown)}.", field="event_types")
    if not chosen:
        raise ValidationError("Choose at least one event.", field="event_types")
    return url, description.strip()[:200], chosen


def create(session: Session, settings: Settings, *, url: str, description: str, event_types: Iterable[str],
           include_machine: bool, created_by: str) -> Saved:
    url, description, chosen = _clean(settings, url, description, event_types)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(url=url, description=description, event_types=chosen,
                               include_machine=include_machine, secret=signing.seal(settings.secret_key, secret),
                               enabled=True,
                               consecutive_failures=0, disabled_reason="", created_by=created_by[:320])
    session.add(endpoint)
    session.flush()
    webhook_events.invalidate()
    webhook_events.invalidate_on_commit(session)
    return Saved(endpoint, secret)


def get(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def change(session: Session, settings: Settings, endpoint: WebhookEndpoint, *, url: str, description: str,
           event_types: Iterable[str], include_machine: bool) -> WebhookEndpoint:
    endpoint.url, endpoint.description, endpoint.event_types = _clean(settings, url, description, event_types)
    endpoint.include_machine = include_machine
    session.flush()
    webhook_events.invalidate()
    webhook_events.invalidate_on_commit(session)
    return endpoint


def set_enabled(session: Session, endpoint: WebhookEndpoint, enabled: bool) -> None:
    """Enable (failure count reset, notice cleared) or disable by hand; pending deliveries wait while disabled."""
    endpoint.enabled = enabled
    endpoint.disabled_at = None if enabled else utcnow()
    endpoint.disabled_reason = ""
    if enabled:
        endpoint.consecutive_failures = 0
        endpoint.failing_since = endpoint.paused_until = None
    session.flush()
    webhook_events.invalidate()
    webhook_events.invalidate_on_commit(session)


def rotate_secret(session: Session, settings: Settings, endpoint: WebhookEndpoint) -> str:
    """A new secret, used from the next attempt on; returns it (shown once; stored sealed)."""
    secret = signing.new_secret()
    endpoint.secret = signing.seal(settings.secret_key, secret)
    session.flush()
    return secret


def delete(session: Session, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries (its test events go with it)."""
    session.delete(endpoint)
    session.flush()
    webhook_events.invalidate()
    webhook_events.invalidate_on_commit(session)


@dataclass(frozen=True)
class Row:
    endpoint: WebhookEndpoint
    pending: int
    failed: int
    delivered: int


def listing(session: Session) -> list[Row]:
    """Every endpoint with its counts of pending, failed and delivered deliveries."""
    counts: dict[int, dict[str, int]] = {}
    for endpoint_id, status, n in session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)):
        counts.setdefault(endpoint_id, {})[status] = n
    endpoints = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
    rows = []
    for e in endpoints:
        mine = counts.get(e.id, {})
        rows.append(Row(e, mine.get(DeliveryStatus.PENDING, 0), mine.get(DeliveryStatus.FAILED, 0),
                        mine.get(DeliveryStatus.DELIVERED, 0)))
    return rows


def auto_disabled(session: Session) -> list[WebhookEndpoint]:
    """Endpoints Rapport disabled after sustained failure (the admin notice), until enabled or deleted."""
    return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.disabled_reason != "",
                                                                ~WebhookEndpoint.enabled)))


def release_claims(session: Session, endpoint_id: int) -> None:
    """Forget any claim on the endpoint's pending deliveries (re-enabled: retry them now)."""
    session.execute(update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                                  WebhookDelivery.status == DeliveryStatus.PENDING)
                    .values(claim="", claimed_until=None, next_attempt_at=utcnow()))
