"""Loyalty tiers: the tiers a shop defines (by order value and/or order count over a period) and every change of a
contact's tier (the contact page, the tier report and the "reached a new tier" automation read them).

The contact's current tier is Contact.tier (its name), kept by campaigns.orders.tiers.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow

__all__ = ["LoyaltyTier", "TierChange"]


class LoyaltyTier(Base):
    """One tier. A contact reaches it when, over the last period_days (0: all time), the sum of their orders is at
    least min_value AND their number of orders is at least min_orders (a threshold of 0 asks nothing); of the
    tiers a contact reaches, the one with the highest rank is theirs."""

    __tablename__ = "loyalty_tier"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    rank: Mapped[int] = mapped_column(Integer, unique=True)     # higher is better: Member 1, Silver 2, Gold 3
    min_value: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0.00"))
    min_orders: Mapped[int] = mapped_column(Integer, default=0)
    period_days: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TierChange(Base):
    """A contact moved from one tier to another ("" = no tier); rank_from/rank_to tell promotions from demotions."""

    __tablename__ = "tier_change"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    from_tier: Mapped[str] = mapped_column(String(50), default="")
    to_tier: Mapped[str] = mapped_column(String(50), default="")
    rank_from: Mapped[int] = mapped_column(Integer, default=0)
    rank_to: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(100), default="")     # "order", "nightly", "tiers changed"
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_tier_change_contact", "contact_id", "changed_at"),
        Index("ix_tier_change_time", "changed_at", "rank_to"),
    )
