"""Policy: per-contact ratio cap and frequency decisions (held sends, reasons)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow

__all__ = ["HOLD_REASONS", "DigestItem", "DigestRun", "PolicyConfig", "PolicyLedger", "SendReason"]


class SendReason(StrEnum):
    """Why a send was held or skipped (Send.reason). The first five are policy holds, retried automatically."""

    PAUSED = "paused"                      # the contact paused their mail (preference center)
    PREFERENCE = "preference"              # the contact's chosen frequency (weekly / monthly)
    RATIO = "ratio"                        # not enough nurture mail for another promotion
    WEEKLY_MARKETING = "weekly-marketing"  # marketing mails per 7 days
    DAILY_TOTAL = "daily-total"            # non-transactional mails per 24 hours
    SUPPRESSED = "suppressed"              # bounced or complained: no mail at all, not even transactional
    UNSUBSCRIBED = "unsubscribed"          # left the list (or never confirmed)
    TOPIC = "topic"                        # unsubscribed from the campaign's topics
    DELETED = "deleted"                    # the contact was deleted
    EXPIRED = "expired"                    # the campaign's validity ended before the send could go out
    DIGEST = "digest"                      # went out as an item of the contact's weekly/monthly digest


HOLD_REASONS = (SendReason.PAUSED, SendReason.PREFERENCE, SendReason.RATIO, SendReason.WEEKLY_MARKETING,
                SendReason.DAILY_TOTAL)


class PolicyLedger(Base):
    """One non-transactional message reserved or sent to a contact: what the rolling-window caps count.

    A row is written, under the contact's lock, in the same transaction that lets the send pass; it is removed if
    the message then does not go out (failure, deferral). Rows older than the longest window are pruned.
    """

    __tablename__ = "policy_ledger"

    send_id: Mapped[int] = mapped_column(BigId, ForeignKey("send.id", ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(20))
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_policy_ledger_contact_time", "contact_id", "sent_at", "kind"),)


class PolicyConfig(Base):
    """The policy values saved in the admin (one row, id 1); without it campaigns.config.PolicySettings applies."""

    __tablename__ = "policy_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    window_days: Mapped[int] = mapped_column(Integer)
    ratio_marketing: Mapped[int] = mapped_column(Integer)
    ratio_nurture: Mapped[int] = mapped_column(Integer)
    min_nurture_before_marketing: Mapped[int] = mapped_column(Integer)
    marketing_per_week: Mapped[int] = mapped_column(Integer)
    messages_per_day: Mapped[int] = mapped_column(Integer)
    hold_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(320), default="")


class DigestRun(Base):
    """One run of the weekly/monthly digest: its per-run nurture campaign (campaigns.sending.digest)."""

    __tablename__ = "digest_run"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    contacts: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)


class DigestItem(Base):
    """A held send that went into a contact's digest instead of going out on its own (now skipped/digest)."""

    __tablename__ = "digest_item"

    send_id: Mapped[int] = mapped_column(BigId, ForeignKey("send.id", ondelete="CASCADE"), primary_key=True)
    digest_campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigId)

    __table_args__ = (Index("ix_digest_item_campaign_contact", "digest_campaign_id", "contact_id"),)
