"""API: outgoing webhooks — the endpoints (without their secrets), each endpoint's delivery log with the exact
payloads, and replay of one delivery or of every failed one since a time (docs/outgoing-webhooks.md). A receiving system
that was down can read what it missed here and have it posted again."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from campaigns.models import ApiScope, WebhookDelivery, WebhookEndpoint
from campaigns.web.api.blueprint import bp
from campaigns.web.api.schemas import Input, PageQuery, decode_cursor, encode_cursor
from campaigns.web.api.spec import API_PREFIX, operation
from campaigns.web.context import db, rt
from campaigns.webhooks import endpoints, log


class EndpointOut(BaseModel):
    id: int
    url: str
    description: str
    event_types: list[str]
    include_machine: bool = Field(description="Also opens and clicks by machines (proxies, scanners)")
    enabled: bool
    disabled_reason: str = Field(description="Why Rapport disabled it after sustained failure (empty otherwise)")
    consecutive_failures: int


class EndpointList(BaseModel):
    data: list[EndpointOut]


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str = Field(description="The webhook-id header: the same on every attempt and replay")
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    last_attempt_at: dt.datetime | None
    last_status: int | None = Field(description="HTTP status of the last answer")
    last_error: str
    payload: dict[str, Any] = Field(description="The exact JSON body posted")


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


class DeliveryQuery(PageQuery):
    status: Literal["pending", "delivered", "failed"] | None = None


class ReplayFailedIn(Input):
    since: dt.datetime = Field(description="Failed deliveries created at or after this time are posted again")


class Replayed(BaseModel):
    replayed: int


def endpoint_out(e: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(id=e.id, url=e.url, description=e.description, event_types=list(e.event_types or []),
                       include_machine=e.include_machine, enabled=e.enabled, disabled_reason=e.disabled_reason,
                       consecutive_failures=e.consecutive_failures)


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(id=d.id, webhook_id=f"msg_{d.event_id}", type=d.event.type, status=d.status,
                       attempts=d.attempts, created_at=d.created_at, next_attempt_at=d.next_attempt_at,
                       last_attempt_at=d.last_attempt_at, last_status=d.last_status, last_error=d.last_error,
                       payload=json.loads(d.event.body))


@operation(bp, "GET", f"{API_PREFIX}/webhook-endpoints", tag="Outgoing webhooks", summary="List endpoints",
           scope=ApiScope.WEBHOOKS_REPLAY, response=EndpointList)
def webhook_endpoint_list():
    """Every endpoint registered under Settings → Webhooks; secrets are never returned."""
    return EndpointList(data=[endpoint_out(row.endpoint) for row in endpoints.listing(db())])


@operation(bp, "GET", f"{API_PREFIX}/webhook-endpoints/<int:endpoint_id>/deliveries", tag="Outgoing webhooks",
           summary="An endpoint's delivery log", scope=ApiScope.WEBHOOKS_REPLAY, query=DeliveryQuery,
           response=DeliveryList, errors=(404,))
def webhook_delivery_list(endpoint_id: int, query: DeliveryQuery):
    """Newest first, with each delivery's payload; status=failed lists what the endpoint missed."""
    session = db()
    endpoints.get(session, endpoint_id)
    before = decode_cursor(query.cursor)
    rows = log.deliveries(session, endpoint_id, status=query.status or "", before=before, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return DeliveryList(data=[delivery_out(d) for d in rows],
                        next_cursor=encode_cursor(rows[-1].id) if more else None)


@operation(bp, "POST", f"{API_PREFIX}/webhook-endpoints/<int:endpoint_id>/deliveries/<int:delivery_id>/replay",
           tag="Outgoing webhooks", summary="Post a delivery again", scope=ApiScope.WEBHOOKS_REPLAY,
           response=DeliveryOut, status=202, errors=(404, 409))
def webhook_delivery_replay(endpoint_id: int, delivery_id: int):
    """Queues the delivery again now (same webhook-id and body, a new signature, a fresh 24-hour retry window).
    409 while a worker is posting it."""
    session = db()
    delivery = log.get_delivery(session, endpoint_id, delivery_id)
    log.replay(session, rt().settings, delivery)
    session.commit()
    return delivery_out(delivery), 202


@operation(bp, "POST", f"{API_PREFIX}/webhook-endpoints/<int:endpoint_id>/replay-failed", tag="Outgoing webhooks",
           summary="Post every failed delivery since a time again", scope=ApiScope.WEBHOOKS_REPLAY,
           body=ReplayFailedIn, response=Replayed, status=202, errors=(404,))
def webhook_replay_failed(endpoint_id: int, body: ReplayFailedIn):
    """Failed deliveries of the endpoint created at or after `since` are queued again (a time without a zone is
    UTC)."""
    session = db()
    endpoints.get(session, endpoint_id)
    since = body.since if body.since.tzinfo else body.since.replace(tzinfo=dt.UTC)
    count = log.replay_failed_since(session, rt().settings, endpoint_id, since)
    session.commit()
    return Replayed(replayed=count), 202
