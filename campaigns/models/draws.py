"""Prize draws: a draw with its rules, entry window, eligibility and committed seed; entries and their winners."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow

__all__ = ["Draw", "DrawEntry"]


class Draw(Base):
    """A prize draw. The seed is secret until the draw; its SHA-256 (seed_hash) is public from the start."""

    __tablename__ = "draw"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)        # the public page /draws/<public_id>
    name: Mapped[str] = mapped_column(String(200), unique=True)
    prize: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[str] = mapped_column(Text, default="")
    opens_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    closes_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id", ondelete="SET NULL"))  # None: everyone
    winners_count: Mapped[int] = mapped_column(Integer, default=1)
    seed: Mapped[str] = mapped_column(String(64))                           # 32 random bytes, hex; revealed at draw
    seed_hash: Mapped[str] = mapped_column(String(64))                      # sha256(seed bytes), hex; public
    drawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    drawn_by: Mapped[str] = mapped_column(String(320), default="")
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    notify_campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    # The mail with a personal entry link that a subscriber asks for on the public page (one per contact).
    link_campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DrawEntry(Base):
    """One contact's entry (one per contact and draw); ref is the opaque reference published in the entry list."""

    __tablename__ = "draw_entry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("draw.id", ondelete="CASCADE"))
    # NULL once the contact is erased: the reference stays in the published list, so the draw stays verifiable.
    contact_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("contact.id", ondelete="SET NULL"))
    ref: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(20), default="mail")         # mail | page
    entered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    winner_rank: Mapped[int | None] = mapped_column(Integer)                # 1 = first winner

    __table_args__ = (
        UniqueConstraint("draw_id", "contact_id"),
        UniqueConstraint("draw_id", "ref"),
        Index("ix_draw_entry_contact", "contact_id"),
        Index("ix_draw_entry_draw_id", "draw_id", "id"),       # the admin page: a draw's newest entries
    )
