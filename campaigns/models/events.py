"""Event invitations: an event attached to a nurture campaign, each invitee's reply (yes / no / maybe, or waiting
for a place), attendance, and the mail the event sends by itself (reminders, places freed)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow


class ReplyAnswer(StrEnum):
    YES = "yes"              # holds a place
    NO = "no"
    MAYBE = "maybe"          # holds no place
    WAITLIST = "waitlist"    # said yes when the event was full: promoted in order when a place frees


class EventMailKind(StrEnum):
    REMINDER = "reminder"    # the day before, to yes and maybe
    PROMOTED = "promoted"    # "a place freed up: you are in"


class CalendarEvent(Base):
    """An event: a title, a start in a time zone, a place or a link, and a capacity (0: unlimited)."""

    __tablename__ = "calendar_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())        # UTC; shown in `zone`
    duration_minutes: Mapped[int] = mapped_column(Integer, default=60)
    zone: Mapped[str] = mapped_column(String(64), default="UTC")
    place: Mapped[str] = mapped_column(String(300), default="")
    link: Mapped[str] = mapped_column(String(500), default="")
    capacity: Mapped[int] = mapped_column(Integer, default=0)
    taken: Mapped[int] = mapped_column(Integer, default=0)              # yes replies; only a conditional UPDATE
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EventReply(Base):
    """One invitee's current answer (answering again replaces it; contact events keep the history)."""

    __tablename__ = "event_reply"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("calendar_event.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    send_id: Mapped[int] = mapped_column(BigId)
    answer: Mapped[ReplyAnswer] = mapped_column(String(10))
    answered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    waiting_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())   # the waitlist's order
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())     # moved up from the waitlist
    notice_campaign_id: Mapped[int | None] = mapped_column(Integer)   # the mail that told them (EventMailing)
    reminder_campaign_id: Mapped[int | None] = mapped_column(Integer)  # the reminder that went to them
    attended: Mapped[bool | None] = mapped_column(Boolean)                      # marked in the admin

    __table_args__ = (
        UniqueConstraint("event_id", "contact_id"),
        Index("ix_event_reply_answer", "event_id", "answer", "waiting_since"),
    )


class EventMailing(Base):
    """A campaign the event sent by itself (a reminder, a 'you are in' note), so its messages carry the event."""

    __tablename__ = "event_mailing"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("calendar_event.id", ondelete="CASCADE"))
    kind: Mapped[EventMailKind] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
