"""The proof of consent a contact gave through signup forms: one record per signup, with the consent text as it
was then, the request and the confirmation (who, when, from where).

A plain read of the Signup rows, kept with the contacts because the contact's GDPR export includes it; the signup
capability (campaigns.signup) writes those rows and exports a form's records as CSV with the same columns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Contact, Signup, SignupForm

PROOF_COLUMNS = ("email", "status", "requested_at", "ip", "user_agent", "consent_version", "consent_text", "topics",
                 "confirmation_mailed_at", "confirmed_at", "confirm_ip", "confirm_user_agent", "form")


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def proof_record(signup: Signup, email: str, form_name: str) -> dict[str, Any]:
    """One signup as a consent record (the PROOF_COLUMNS, topics as a list)."""
    return {"email": email, "status": str(signup.status), "requested_at": _iso(signup.requested_at),
            "ip": signup.ip, "user_agent": signup.user_agent, "consent_version": signup.consent_version,
            "consent_text": signup.consent_text, "topics": list(signup.topic_names or []),
            "confirmation_mailed_at": _iso(signup.mailed_at), "confirmed_at": _iso(signup.confirmed_at),
            "confirm_ip": signup.confirm_ip, "confirm_user_agent": signup.confirm_user_agent, "form": form_name}


def consent_records(session: Session, contact_id: int) -> list[dict[str, Any]]:
    """The contact's signups through forms with their consent proof (for the GDPR export)."""
    rows = session.execute(select(Signup, Contact.email, SignupForm.name).join(Contact, Contact.id == Signup.contact_id)
                           .join(SignupForm, SignupForm.id == Signup.form_id)
                           .where(Signup.contact_id == contact_id).order_by(Signup.id))
    return [proof_record(s, email, name) for s, email, name in rows]
