"""Database models: the contact list, campaigns and the send log. The database is the state machine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from campaigns.db import Base

# BIGINT ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    """Timezone-aware now in UTC; every stored time is UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)   # one text format, so SQLite compares them correctly
        return value

    def process_result_value(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class ContactStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    PENDING = "pending"


class CampaignKind(StrEnum):
    NURTURE = "nurture"
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class SendStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"     # claimed by a worker; SMTP may or may not have accepted it yet
    SENT = "sent"
    FAILED = "failed"
    HELD = "held"
    SKIPPED = "skipped"
    # The whole message was handed to the relay but no reply was recorded (a dropped connection after the final
    # dot, a worker killed mid-send): the relay may or may not have it. Final until a person chooses to resend.
    UNKNOWN = "unknown"


class EventType(StrEnum):
    SENT = "sent"
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    PREFERENCES = "preferences"
    SUBSCRIBE = "subscribe"
    DELIVERED = "delivered"     # a relay's webhook confirmed delivery
    SURVEY_ANSWER = "survey_answer"   # data: survey_id, question (0-based), answer
    PERSONAL_MAIL = "personal_mail"   # an apology or follow-up written on the contact's page (services.apology)
    LETTER = "letter"                 # a campaign printed for the contact as a letter or card (campaigns.post)


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


class AdminRole(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


campaign_topic = Table(
    "campaign_topic",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True),
    Column("topic_id", ForeignKey("topic.id", ondelete="CASCADE"), primary_key=True),
)


class AdminUser(Base):
    __tablename__ = "admin_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[AdminRole] = mapped_column(String(20), default=AdminRole.EDITOR)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    # Flask-Login protocol, kept here so the model needs no Flask import.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class Sender(Base):
    """A named person mail can come from (an account owner), so customers hear from someone they know."""

    __tablename__ = "sender"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str | None] = mapped_column(String(200))
    # Its domain is not one the DKIM key signs for, and an admin chose to send as it anyway (DMARC may fail).
    allow_unaligned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


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
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
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


class Campaign(Base):
    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[CampaignKind] = mapped_column(String(20), default=CampaignKind.NURTURE)
    subject: Mapped[str] = mapped_column(String(998))
    preheader: Mapped[str] = mapped_column(String(500), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[str] = mapped_column(String(320), default="")
    reply_to: Mapped[str] = mapped_column(String(320), default="")
    mjml: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text, default="")   # empty: derived from the HTML
    all_contacts: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[CampaignStatus] = mapped_column(String(20), default=CampaignStatus.DRAFT, index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    relay: Mapped[str] = mapped_column(String(50), default="", server_default="")   # SMTP relay name; "" = default
    # Sent to a fixed list of contacts given by sending.dispatch_to (an automation's run, a digest), never to an
    # audience: resuming it re-queues only its own send rows.
    recipients_listed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Each recipient gets one code of this pool (campaigns.coupons.pools); and this survey (services.surveys).
    coupon_pool_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_pool.id", ondelete="SET NULL"))
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("survey.id", ondelete="SET NULL"))
    # A saved segment narrowing the audience (ANDed with the topics); evaluated when the campaign is dispatched.
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id", ondelete="SET NULL"))
    # Held sends are retried until then and expire after; no send goes out later (e.g. the coupon's expiry).
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Dispatch inserts send rows in contact-id order and records the last contact id done, so a killed dispatch
    # resumes there (campaigns.sending.lifecycle.dispatch).
    dispatch_cursor: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    # BCP 47 tag of the mail's language (<html lang>, dir); new campaigns take the default from Settings.
    language: Mapped[str] = mapped_column(String(35), default="en", server_default="en")
    # The From domain is not one the DKIM key signs for, and the marketer chose to send anyway (DMARC may fail).
    allow_unaligned_from: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    topics: Mapped[list[Topic]] = relationship(secondary=campaign_topic)
    links: Mapped[list[Link]] = relationship(back_populates="campaign", cascade="all, delete-orphan")


class Link(Base):
    """A distinct URL of a campaign; click tokens name its id, so a click can only go where the campaign said."""

    __tablename__ = "link"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)

    campaign: Mapped[Campaign] = relationship(back_populates="links")

    __table_args__ = (UniqueConstraint("campaign_id", "position"),)


class Send(Base):
    """One campaign to one contact: created queued by dispatch, claimed and finished by a batch job."""

    __tablename__ = "send"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    status: Mapped[SendStatus] = mapped_column(String(20), default=SendStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The worker process holding the claim and until when; the worker renews the lease while it works, so an
    # expired lease means a dead (or long-blocked) worker and the sweeper recovers the row.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    smtp_code: Mapped[int | None] = mapped_column(Integer)   # last SMTP reply code
    reason: Mapped[str] = mapped_column(String(20), default="", server_default="")   # SendReason of held/skipped

    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        # Claims walk one status of one campaign in contact order, within a batch's contact range.
        Index("ix_send_campaign_status_contact", "campaign_id", "status", "contact_id"),
    )


class Event(Base):
    """Something that happened to a contact (sent, open, click, unsubscribe, bounce…): the timeline and segments."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    send_id: Mapped[int | None] = mapped_column(BigId)
    type: Mapped[EventType] = mapped_column(String(30))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Opens and clicks by proxies, prefetchers and scanners: recorded, but never counted as engagement.
    machine: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Who fetched (a short hash of network and user agent): finds one fetcher opening for many recipients.
    fetcher: Mapped[str | None] = mapped_column(String(16))
    # Idempotency key of the tracking hit or inbound message this event came from; replays are ignored.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    __table_args__ = (
        Index("ix_event_contact_time", "contact_id", "occurred_at"),
        Index("ix_event_campaign_type", "campaign_id", "type"),
        Index("ix_event_type_time", "type", "occurred_at", "contact_id"),
        Index("ix_event_send_type", "send_id", "type"),
    )


class Suppression(Base):
    """An address never to mail again, keyed by a hash of the normalized address so it outlives erasure."""

    __tablename__ = "suppression"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[SuppressionReason] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
