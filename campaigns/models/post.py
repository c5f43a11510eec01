"""Letters and cards by post: print runs of a campaign, the letter each contact got, and who wants no post."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.core import BigId, UTCDateTime, utcnow

__all__ = ["LabelSheet", "PostLayout", "PostLetter", "PostOptOut", "PostRun", "PostRunStatus"]


class PostLayout(StrEnum):
    """Where the address sits on the page: the window of the envelope the letters go into."""

    DIN5008 = "din5008"    # A4 letter, DL/C5 window envelope (DIN 5008 form B)
    US10 = "us10"          # US Letter, #10 window envelope
    CARD_A6 = "card-a6"    # A6 postcard: message on the left, address on the right (no envelope)


class LabelSheet(StrEnum):
    """Address-label sheets: Avery L7160 (A4, 3 × 7) and Avery 5160 (US Letter, 3 × 10)."""

    L7160 = "L7160"
    AVERY5160 = "5160"


class PostRunStatus(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    DONE = "done"
    FAILED = "failed"


class PostRun(Base):
    """One printing of a campaign: who was eligible, how far the PDF is, and where its files are."""

    __tablename__ = "post_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), index=True)
    layout: Mapped[PostLayout] = mapped_column(String(20), default=PostLayout.DIN5008)
    label_sheet: Mapped[LabelSheet] = mapped_column(String(10), default=LabelSheet.L7160)
    return_address: Mapped[str] = mapped_column(Text, default="")
    # Where the QR code leads: "" for the letter's tracked web version, else a URL where {code} is the coupon code.
    qr_url: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[PostRunStatus] = mapped_column(String(20), default=PostRunStatus.QUEUED)
    letters: Mapped[int] = mapped_column(Integer, default=0)       # pages to print (eligible, passed the policy)
    rendered: Mapped[int] = mapped_column(Integer, default=0)      # progress of the PDF
    held: Mapped[int] = mapped_column(Integer, default=0)          # the contact policy said not now
    no_address: Mapped[int] = mapped_column(Integer, default=0)    # in the audience, postal address incomplete
    no_post: Mapped[int] = mapped_column(Integer, default=0)       # in the audience, asked for no post
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class PostLetter(Base):
    """The letter one contact got from a run: the record "letter sent on …" and the code printed on it."""

    __tablename__ = "post_letter"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("post_run.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    send_id: Mapped[int | None] = mapped_column(BigId)
    page: Mapped[int] = mapped_column(Integer)
    coupon_code: Mapped[str] = mapped_column(String(64), default="")
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("run_id", "contact_id"), Index("ix_post_letter_run_page", "run_id", "page"))


class PostOptOut(Base):
    """A contact who asked for no post (preference center or admin): never in a print run."""

    __tablename__ = "post_opt_out"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
