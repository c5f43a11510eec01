"""The admin audit log: who changed what, when (campaign actions, settings, users, DKIM keys, exports, erasures)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow

__all__ = ["AuditEntry"]


class AuditEntry(Base):
    """One admin action. Rows are only ever added; nothing in the app edits or deletes them."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))          # the admin user's email ("" for the system)
    action: Mapped[str] = mapped_column(String(64))          # campaigns.accounts.audit.Action
    target: Mapped[str] = mapped_column(String(200), default="", server_default="")   # "campaign 12", "user 3"
    detail: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    ip: Mapped[str] = mapped_column(String(64), default="", server_default="")

    __table_args__ = (
        Index("ix_audit_entry_at", "at"),
        Index("ix_audit_entry_action_at", "action", "at"),
        Index("ix_audit_entry_actor_at", "actor", "at"),
    )
