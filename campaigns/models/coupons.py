"""Coupon pools and codes, assigned one per recipient at send time."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow


class CouponPool(Base):
    """A set of single-use codes (imported from the shop or generated) with what they are worth and until when."""

    __tablename__ = "coupon_pool"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    value_description: Mapped[str] = mapped_column(String(200))      # "15% off your next order"
    expires_on: Mapped[dt.date] = mapped_column(Date)                  # last day a code is valid
    # Loyalty tier names a code may go to ([]: anyone); a tier-only pool refuses everyone else.
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def expired(self) -> bool:
        """Whether the last valid day has passed (codes are refused by the shop API from the next day)."""
        return self.expires_on < dt.date.today()


class CouponCode(Base):
    """One code. Free while campaign_id and contact_id are empty; (campaign, contact) gets at most one code."""

    __tablename__ = "coupon_code"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("coupon_pool.id", ondelete="CASCADE"))
    # Unique across pools, so the shop's redemption call names exactly one code.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    send_id: Mapped[int | None] = mapped_column(BigId)
    note: Mapped[str] = mapped_column(String(200), default="")         # who issued it outside a campaign
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    redeemed_reference: Mapped[str] = mapped_column(String(200), default="")   # the shop's order number
    redeemed_by: Mapped[str] = mapped_column(String(200), default="")          # "api: <token name>" or a user
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    pool: Mapped[CouponPool] = relationship()

    __table_args__ = (
        # The retry key: a recipient's message that is sent again gets the code it already has.
        UniqueConstraint("campaign_id", "contact_id"),
        Index("ix_coupon_code_pool_free", "pool_id", "assigned_at", "id"),
        Index("ix_coupon_code_contact", "contact_id"),
    )


class CouponApiToken(Base):
    """A bearer token the shop system uses to mark codes redeemed; only its SHA-256 is stored."""

    __tablename__ = "coupon_api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(Text, default="")
