"""A/B tests: up to four variants of a campaign's subject, preheader, sender or content, tried on a share of its
audience; the winner, chosen by what people did (never by machine opens), goes to the rest
(campaigns.abtests, campaigns.sending.variants)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import UTCDateTime, utcnow

__all__ = ["MAX_VARIANTS", "VARIANT_LETTERS", "AbCriterion", "AbOutcome", "AbPhase", "AbTest", "AbVariant",
           "variant_letter"]

MAX_VARIANTS = 4          # A (the campaign itself) and up to three more
VARIANT_LETTERS = "ABCD"


class AbCriterion(StrEnum):
    """What picks the winner: share of recipients who did it. Machine opens and clicks never count, nor do
    auto-replies (out-of-office)."""

    HUMAN_CLICKS = "human_clicks"
    HUMAN_OPENS = "human_opens"
    COUPON_REDEMPTIONS = "coupon_redemptions"
    REPLIES = "replies"


class AbPhase(StrEnum):
    """Where a test stands. TEST: the test share is sent and the decision waits for its time; DECIDED: the figures
    were judged and a person picks what the rest gets (no automatic send, or no clear winner); REST: the chosen
    variant goes to the remaining audience."""

    TEST = "test"
    DECIDED = "decided"
    REST = "rest"


class AbOutcome(StrEnum):
    """How the decision came about."""

    WINNER = "winner"                 # significant difference: the best variant won
    NOT_SIGNIFICANT = "not_significant"
    TOO_FEW = "too_few"               # below the minimum sample: nothing judged
    PICKED = "picked"                 # a person chose


class AbTest(Base):
    """A campaign's A/B test: the test share, the criterion, the wait, and the decision once made."""

    __tablename__ = "ab_test"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), unique=True)
    test_percent: Mapped[int] = mapped_column(Integer, default=20)     # of the audience, split evenly
    criterion: Mapped[AbCriterion] = mapped_column(String(30), default=AbCriterion.HUMAN_CLICKS)
    wait_minutes: Mapped[int] = mapped_column(Integer, default=240)     # after the test share was dispatched
    auto_send: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    default_variant: Mapped[int] = mapped_column(Integer, default=0)    # goes when no winner is clear
    phase: Mapped[AbPhase] = mapped_column(String(20), default=AbPhase.TEST)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(20), default="", server_default="")
    winner: Mapped[int | None] = mapped_column(Integer)                 # the variant the rest gets
    best: Mapped[int | None] = mapped_column(Integer)                   # the best measured (maybe not significant)
    confidence: Mapped[float | None] = mapped_column(Float)             # 1 - p of best vs runner-up
    decision: Mapped[str] = mapped_column(Text, default="")             # the decision in words
    figures: Mapped[str] = mapped_column(Text, default="")              # JSON of the judged figures
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    variants: Mapped[list[AbVariant]] = relationship(back_populates="test", cascade="all, delete-orphan",
                                                     order_by="AbVariant.position")


class AbVariant(Base):
    """Variant B, C or D (position 1-3; A is the campaign). An empty field is the campaign's own."""

    __tablename__ = "ab_variant"

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("ab_test.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(998), default="")
    preheader: Mapped[str] = mapped_column(String(500), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[str] = mapped_column(String(320), default="")
    mjml: Mapped[str] = mapped_column(Text, default="")

    test: Mapped[AbTest] = relationship(back_populates="variants")

    __table_args__ = (UniqueConstraint("test_id", "position"),)


def variant_letter(position: int | None) -> str:
    """A, B, C or D."""
    return VARIANT_LETTERS[position] if position is not None and 0 <= position < MAX_VARIANTS else "?"
