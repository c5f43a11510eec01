"""Replies: what a person (or their out-of-office) wrote back to a message, kept for the Replies inbox."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.core import BigId, UTCDateTime, utcnow

__all__ = ["MailState", "Reply", "ReplyStatus"]


class ReplyStatus(StrEnum):
    """Where a reply stands in the inbox."""

    OPEN = "open"
    ANSWERED = "answered"
    ARCHIVED = "archived"


class MailState(StrEnum):
    """A mail Rapport owes about a reply (the forward to the owner, an answer written in the admin)."""

    NONE = ""              # nothing to send
    PENDING = "pending"    # to be sent by the reply_mail job (retried until MAX_MAIL_ATTEMPTS)
    SENT = "sent"
    FAILED = "failed"      # the relay refused it for good, or every attempt failed (last_error says why)


class Reply(Base):
    """One inbound answer to a message, matched to its contact and campaign (when it could be).

    `text` is the new text alone (quoted history and signature stripped); `original_text` the whole plain text and
    `original_html` the sanitised HTML (never shown unsanitised), both size-limited. Auto-replies are kept with
    `auto` set: they never count as engagement, are never forwarded and start archived.
    """

    __tablename__ = "reply"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    send_id: Mapped[int | None] = mapped_column(BigId)
    matched_by: Mapped[str] = mapped_column(String(20), default="")     # token, message-id, from, or ""
    auto: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[ReplyStatus] = mapped_column(String(20), default=ReplyStatus.OPEN)
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    message_id: Mapped[str] = mapped_column(String(998), default="")    # the reply's own, for threading answers
    references: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    original_text: Mapped[str] = mapped_column(Text, default="")
    original_html: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)   # the same message read twice counts once
    forward_to: Mapped[str] = mapped_column(String(320), default="")
    forward_state: Mapped[MailState] = mapped_column(String(10), default=MailState.NONE)
    answer_text: Mapped[str] = mapped_column(Text, default="")
    answered_by: Mapped[str] = mapped_column(String(200), default="")
    answer_sender_id: Mapped[int | None] = mapped_column(ForeignKey("sender.id", ondelete="SET NULL"))
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    answer_state: Mapped[MailState] = mapped_column(String(10), default=MailState.NONE)
    mail_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Whoever sends what this reply owes holds it until then (campaigns.replies.mail.claim); an expired lease is
    # a dead sender's, so the mail is retried.
    mail_lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_reply_status_time", "status", "received_at"),
        Index("ix_reply_contact_time", "contact_id", "received_at"),
        Index("ix_reply_campaign", "campaign_id"),
    )
