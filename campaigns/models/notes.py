"""Notes about a contact: what the people who know the customer wrote down (author, time, text, optional pin)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.core import BigId, UTCDateTime, utcnow

__all__ = ["Note"]


class Note(Base):
    """One note on a contact. Pinned notes sit at the top of the contact page with the key facts.

    The author's name is copied in, so a note still says who wrote it after that admin user is removed.
    """

    __tablename__ = "note"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("admin_user.id", ondelete="SET NULL"))
    author_name: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="", server_default="")

    __table_args__ = (Index("ix_note_contact_time", "contact_id", "created_at"),)
