"""Database models: campaigns, their links, and the send log with its events. The database is the state machine.

The contact list is campaigns.models.contacts, admin users campaigns.models.accounts, shared column types
campaigns.models.columns; import any model from campaigns.models.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow
from campaigns.models.contacts import Topic
from campaigns.models.policy import SendReason


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
    REPLY = "reply"                   # the contact answered a mail (campaigns.replies); data: reply_id, text
    AUTO_REPLY = "auto_reply"         # an out-of-office or other automatic answer: recorded, never engagement
    DETAILS = "details"               # the contact changed their details in the preference center (data: fields)
    DRAW_ENTRY = "draw_entry"         # the contact entered a prize draw (campaigns.draws); data: draw_id, source
    EVENT_REPLY = "event_reply"       # answered an event invitation (campaigns.events); data: event_id, title, answer


campaign_topic = Table(
    "campaign_topic",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True),
    Column("topic_id", ForeignKey("topic.id", ondelete="CASCADE"), primary_key=True),
)


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
    # Delivery in each reader's local time (campaigns.sending.localtime): "HH:MM" ("" = all at once), the zone of
    # contacts without one, what a time already past in a zone at dispatch means ("next_day" or "now"), and the
    # optional best hour per contact learned from their opens and clicks, within local hours [best_from, best_to).
    local_time: Mapped[str] = mapped_column(String(5), default="", server_default="")
    local_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    local_late: Mapped[str] = mapped_column(String(10), default="next_day", server_default="next_day")
    best_time: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    best_from: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    best_to: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    # How the transactional API names this template (POST /api/v1/tx {"template": "order-receipt"}); every
    # transactional campaign has one (campaigns.composing.editor.save_campaign), other kinds none.
    slug: Mapped[str | None] = mapped_column(String(100), unique=True, index=True)

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
    # No foreign keys (they cost half a large dispatch on PostgreSQL): triggers delete a deleted campaign's or
    # contact's sends, and campaigns.sending.sendrows keeps an insert from naming a contact being erased.
    campaign_id: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[int] = mapped_column(BigId, index=True)
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
    # Why a held or skipped send did not go out; "" for the others.
    reason: Mapped[SendReason | str] = mapped_column(String(20), default="", server_default="")
    # A local-time campaign's send waits until then (the contact's local hour); next_attempt_at carries the same
    # instant so claims take the row only once it is due.
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The A/B test variant this send renders (0 = A, the campaign itself); None without a test.
    variant: Mapped[int | None] = mapped_column(SmallInteger)

    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        # Claims walk one status of one campaign in contact order, within a batch's contact range.
        Index("ix_send_campaign_status_contact", "campaign_id", "status", "contact_id"),
        # Rows of a local-time campaign still to go (campaigns.sending.localtime): whether any is due, how many wait
        # and for when, answered from this small index alone however many wait for a later zone.
        Index("ix_send_local_queued", "campaign_id", "not_before", "next_attempt_at",
              postgresql_where=sql_text("status = 'queued' AND not_before IS NOT NULL"),
              sqlite_where=sql_text("status = 'queued' AND not_before IS NOT NULL")),
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
    # The transactional message (tx_message.id) an open, click or bounce is about; such events have no send.
    tx_message_id: Mapped[int | None] = mapped_column(BigId)

    __table_args__ = (
        Index("ix_event_contact_time", "contact_id", "occurred_at"),
        Index("ix_event_campaign_type", "campaign_id", "type"),
        Index("ix_event_type_time", "type", "occurred_at", "contact_id"),
        Index("ix_event_send_type", "send_id", "type"),
        Index("ix_event_tx_type", "tx_message_id", "type"),
    )
