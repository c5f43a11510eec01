"""The suppression list: addresses never to mail again, kept as a hash of the normalized address so an entry
outlives the contact's erasure and blocks a re-import or a new signup.

It is contact data, so it lives with the contacts: the feedback loop (bounces, complaints), the GDPR erasure, the
import and the signup all read or add entries through this module.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from campaigns.models import ContactStatus, Suppression, SuppressionReason


def email_hash(email: str) -> str:
    """SHA-256 of the normalized (trimmed, lower-cased) address: the suppression key."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    """Whether this address must never be mailed again (hard bounce, soft bounces, complaint or manual)."""
    return session.get(Suppression, email_hash(email)) is not None


def suppress(session: Session, email: str, reason: SuppressionReason, source: str = "") -> None:
    """Add the address to the suppression list (idempotent; the first reason stays). Flushes, does not commit."""
    key = email_hash(email)
    if session.get(Suppression, key) is None:
        session.add(Suppression(email_hash=key, reason=reason, source=source[:200]))
        session.flush()


def suppressed_status(session: Session, email: str) -> ContactStatus | None:
    """The status a suppressed address keeps when it is added again (bounced, complained, unsubscribed), else None."""
    row = session.get(Suppression, email_hash(email))
    if row is None:
        return None
    return {SuppressionReason.COMPLAINT: ContactStatus.COMPLAINED,
            SuppressionReason.MANUAL: ContactStatus.UNSUBSCRIBED}.get(row.reason, ContactStatus.BOUNCED)
