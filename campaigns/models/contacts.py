"""Database models: the contact list — contacts, topics and subscriptions, interests, orders, and the suppression
list that outlives a contact's erasure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.accounts import Sender
from campaigns.models.columns import BigId, UTCDateTime, utcnow


class ContactStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    PENDING = "pending"


class Frequency(StrEnum):
    """How often a contact wants mail (preference center); the send path honours it for non-transactional mail."""

    EVERY = "every"       # every mail
    WEEKLY = "weekly"     # at most one message a week (a digest)
    MONTHLY = "monthly"   # at most one message a month


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"


class Topic(Base):
    __tablename__ = "topic"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Contact(Base):
    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Stored normalized (lower-case), which makes the unique index case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(50), default="")
    address_line1: Mapped[str] = mapped_column(String(200), default="")
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    region: Mapped[str] = mapped_column(String(100), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    # Indexed for the zones an audience is in (campaigns.automations.triggers), found by jumping zone to zone.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", index=True)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    # jsonb on PostgreSQL: segment rules read keys of a million rows without re-parsing each document.
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"), default=dict)
    status: Mapped[ContactStatus] = mapped_column(String(20), default=ContactStatus.SUBSCRIBED, index=True)
    consent_source: Mapped[str] = mapped_column(String(200), default="")
    consent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("sender.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)   # list growth
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_opened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_clicked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    engagement_score: Mapped[float] = mapped_column(Float, default=0.0)
    # The score above is exact as of engagement_at; it decays from there (campaigns.feedback.engagement).
    engagement_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    frequency: Mapped[Frequency] = mapped_column(String(20), default=Frequency.EVERY, server_default="every")
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The loyalty tier's name ("" = none), kept by campaigns.orders.tiers when orders arrive and nightly.
    tier: Mapped[str] = mapped_column(String(50), default="", server_default="", index=True)

    owner: Mapped[Sender | None] = relationship()
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="contact", cascade="all, delete-orphan"
    )
    interests: Mapped[list[ContactInterest]] = relationship(cascade="all, delete-orphan")
    orders: Mapped[list[Order]] = relationship(cascade="all, delete-orphan", order_by="Order.ordered_at.desc()")

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


class Subscription(Base):
    """A contact's choice about one topic; unsubscribing keeps the row (consent history) with status off."""

    __tablename__ = "subscription"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topic.id", ondelete="CASCADE"), primary_key=True)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship()

    __table_args__ = (Index("ix_subscription_topic_contact", "topic_id", "subscribed", "contact_id"),)


class ContactInterest(Base):
    """A free-form interest tag on a contact (gardening, running…), used by segments."""

    __tablename__ = "contact_interest"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True)
    # Indexed on its own for the segment builder's picker, which jumps from one distinct interest to the next.
    interest: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class Order(Base):
    __tablename__ = "order"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    ordered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    reference: Mapped[str] = mapped_column(String(100), default="")
    # Where it came from (campaigns.models.api.OrderSource) and its id there: unique together, so a retried shop
    # webhook or API call never records an order twice. Admin-entered orders have no external id.
    source: Mapped[str] = mapped_column(String(20), default="", server_default="")
    external_id: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (UniqueConstraint("source", "external_id"),)


class OrderTag(Base):
    """A product tag of an order (a product's tag, category or SKU as the shop reports it), lower case; what a
    post-purchase automation's product filter matches."""

    __tablename__ = "order_tag"

    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("order.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (Index("ix_order_tag_tag", "tag", "order_id"),)


class Suppression(Base):
    """An address never to mail again, keyed by a hash of the normalized address so it outlives erasure."""

    __tablename__ = "suppression"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[SuppressionReason] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
