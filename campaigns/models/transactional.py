"""Transactional messages: one template (a campaign of kind transactional) rendered for one recipient with the
variables and attachments an API call gave (campaigns.transactional). Unlike a campaign's send rows, a contact may
get the same template any number of times (every receipt), so each message is its own row.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow

__all__ = ["TX_FINAL", "TxMessage", "TxStatus"]


class TxStatus(StrEnum):
    QUEUED = "queued"            # accepted, waiting for a worker (or for its retry after a 4xx)
    SENDING = "sending"          # a worker took it
    SENT = "sent"                # the relay accepted it (smtp_code, smtp_reply)
    FAILED = "failed"            # not sent: the template failed, a 4xx stayed after every retry, the relay refused
    SUPPRESSED = "suppressed"    # not sent: the address is bounced, complained or on the suppression list
    BOUNCED = "bounced"          # the relay refused the recipient (5xx): the address is now suppressed
    UNKNOWN = "unknown"          # handed over, no reply: the relay may have it; never sent again by itself


TX_FINAL = frozenset({TxStatus.SENT, TxStatus.FAILED, TxStatus.SUPPRESSED, TxStatus.BOUNCED, TxStatus.UNKNOWN})


class TxMessage(Base):
    """One transactional message: its template, recipient, variables, attachments and delivery state."""

    __tablename__ = "tx_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)    # "tx_…": what the API answers and reads
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # [{filename, content_type, size, data (base64)}]; the data is dropped once the message is final.
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[TxStatus] = mapped_column(String(20), default=TxStatus.QUEUED)
    reason: Mapped[str] = mapped_column(Text, default="")           # why suppressed or failed, in words
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_reply: Mapped[str] = mapped_column(Text, default="")       # the relay's last reply
    subject: Mapped[str] = mapped_column(String(998), default="")   # as rendered, once sent
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_tx_message_status_created", "status", "created_at"),)
