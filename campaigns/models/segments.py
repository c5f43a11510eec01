"""Saved segments: dynamic contact filters, stored as a validated JSON definition and evaluated at use."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.columns import UTCDateTime, utcnow
from campaigns.models.contacts import Contact

__all__ = ["Segment"]


class Segment(Base):
    """A named filter over contacts (campaigns.contacts.segments compiles `definition` to a WHERE clause)."""

    __tablename__ = "segment"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


# Case-insensitive name search on the contacts list (a prefix range on lower(name)); email search uses the
# unique index on contact.email, which is stored lower-case.
Index("ix_contact_first_name_lower", func.lower(Contact.first_name))
Index("ix_contact_last_name_lower", func.lower(Contact.last_name))
