"""The public REST API's own tables: API keys (hashed, scoped, rate-limited) and idempotency records.

Orders carry their source and external id on the order table itself (campaigns.models.core.Order), so a shop's
retried webhook or API call finds the order it already created.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.core import BigId, UTCDateTime, utcnow

__all__ = ["ApiKey", "ApiScope", "IdempotencyRecord", "OrderSource"]


class ApiScope(StrEnum):
    """What a key may do. A key holds a list of these; each API operation names the one it needs."""

    CONTACTS_READ = "contacts:read"          # contacts, topics, subscriptions, events, orders, survey answers
    CONTACTS_WRITE = "contacts:write"        # create, update, erase contacts; subscriptions
    SEGMENTS_READ = "segments:read"
    CAMPAIGNS_READ = "campaigns:read"        # campaigns, their stats and events
    CAMPAIGNS_WRITE = "campaigns:write"      # create drafts, schedule, pause, cancel
    ORDERS_WRITE = "orders:write"
    COUPONS_ISSUE = "coupons:issue"
    COUPONS_REDEEM = "coupons:redeem"
    WEBHOOKS_REPLAY = "webhooks:replay"      # outgoing webhook endpoints, their delivery logs, replay
    SEND_TRANSACTIONAL = "send:transactional"   # send transactional messages, read their status


class OrderSource(StrEnum):
    """Where an order came from; (source, external_id) is unique, which makes recording an order idempotent."""

    ADMIN = ""              # entered or imported in the admin (no external id)
    API = "api"
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"


class ApiKey(Base):
    """A key for the REST API. The secret is shown once; only its SHA-256 is kept (it is 256 random bits, so a
    slow password hash would add nothing). prefix is the public first part, shown in lists and used to look up."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    rate_limit: Mapped[int] = mapped_column(Integer, default=600)     # requests per minute
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(Base):
    """One Idempotency-Key of one API key: the request it was first used with and the answer given.

    A record without status is in progress (its request is running); a retry then gets 409 instead of a second
    execution. Records are kept for a day (campaigns.web.api.idempotency prunes older ones).
    """

    __tablename__ = "idempotency_record"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))      # SHA-256 of method, path and body
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    headers: Mapped[str] = mapped_column(Text, default="")    # Location, when the answer had one
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("api_key_id", "key"),
        Index("ix_idempotency_record_created", "created_at"),
    )
