"""Double opt-in signup forms, pending confirmations and consent records."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow
from campaigns.models.contacts import Topic

signup_form_topic = Table(
    "signup_form_topic",
    Base.metadata,
    Column("form_id", ForeignKey("signup_form.id", ondelete="CASCADE"), primary_key=True),
    Column("topic_id", ForeignKey("topic.id", ondelete="CASCADE"), primary_key=True),
)


class SignupStatus(StrEnum):
    PENDING = "pending"       # confirmation mail sent (or about to be), not clicked yet
    CONFIRMED = "confirmed"   # the person confirmed: this row is the consent record
    EXPIRED = "expired"       # not confirmed in time


class SignupForm(Base):
    """A public signup form: a hosted page and an embeddable snippet that post to /signup/<public_id>."""

    __tablename__ = "signup_form"

    id: Mapped[int] = mapped_column(primary_key=True)
    # What the public URL and the snippet name; random, so forms cannot be enumerated by sequential id.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(200))                 # heading of the hosted page
    intro: Mapped[str] = mapped_column(Text, default="")
    consent_text: Mapped[str] = mapped_column(Text)
    consent_version: Mapped[int] = mapped_column(Integer, default=1)   # bumped whenever consent_text changes
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    topics: Mapped[list[Topic]] = relationship(secondary=signup_form_topic, order_by="Topic.name")


class Signup(Base):
    """One request to subscribe through a form, and once confirmed the proof of consent.

    The consent text is copied at the moment of signing up: the proof must show exactly what the person agreed to,
    whatever the form says later.
    """

    __tablename__ = "signup"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("signup_form.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    status: Mapped[SignupStatus] = mapped_column(String(20), default=SignupStatus.PENDING)
    topic_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)       # chosen on the form
    topic_names: Mapped[list[Any]] = mapped_column(JSON, default=list)     # as they were called then
    consent_text: Mapped[str] = mapped_column(Text)
    consent_version: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    mailed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())   # confirmation mail handed to the relay
    mails: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    confirm_ip: Mapped[str] = mapped_column(String(64), default="")
    confirm_user_agent: Mapped[str] = mapped_column(String(300), default="")

    form: Mapped[SignupForm] = relationship()

    __table_args__ = (
        Index("ix_signup_form_requested", "form_id", "requested_at"),
        Index("ix_signup_status_expires", "status", "expires_at"),
    )
