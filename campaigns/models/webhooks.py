"""Outgoing webhooks: endpoints other systems registered, the outbox of events and each endpoint's deliveries.

An event row is written in the same transaction as the change that causes it (campaigns.webhook_events.record), so
a worker that dies after the commit loses nothing: the routing job turns unrouted events into one delivery per
endpoint that wants them, and delivery jobs post them (campaigns.webhooks).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow

__all__ = ["DeliveryStatus", "WebhookDelivery", "WebhookEndpoint", "WebhookEvent"]


class DeliveryStatus(StrEnum):
    PENDING = "pending"          # due at next_attempt_at (first attempt or a retry)
    DELIVERED = "delivered"      # the endpoint answered 2xx
    FAILED = "failed"            # retried for 24 hours without success, or the endpoint was deleted/disabled


class WebhookEndpoint(Base):
    """A URL that receives signed POSTs for the event types it chose."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    include_machine: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    secret: Mapped[str] = mapped_column(String(100))            # whsec_<base64>; shown once, used to sign
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # After a failed attempt the endpoint rests a moment: new events do not wake a delivery job for a down endpoint.
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str] = mapped_column(Text, default="")   # set when Rapport disabled it (the notice)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class WebhookEvent(Base):
    """One event in the outbox. `body` is the exact JSON that is posted (and signed) to every endpoint."""

    __tablename__ = "webhook_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)
    machine: Mapped[bool] = mapped_column(Boolean, default=False)   # an open/click by a machine (scanner, proxy)
    # A test event goes to this endpoint only; None: every endpoint that wants the type.
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    routed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_webhook_event_routed", "routed", "id"),)


class WebhookDelivery(Base):
    """One event to one endpoint: its attempts, the claim of the worker posting it, the last answer."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_event.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    retry_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())   # no attempt after this: failed (24 h)
    claim: Mapped[str] = mapped_column(String(32), default="")
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)      # HTTP status of the last answer
    last_response: Mapped[str] = mapped_column(Text, default="")   # its body, truncated
    last_error: Mapped[str] = mapped_column(Text, default="")      # no answer: timeout, refused, …
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    event: Mapped[WebhookEvent] = relationship()

    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_endpoint_event"),
        Index("ix_webhook_delivery_due", "endpoint_id", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_event", "event_id"),
    )
