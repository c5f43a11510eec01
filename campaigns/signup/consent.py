"""Consent records of a signup form (admin): its latest signups, and all of them as CSV, the proof of consent
(campaigns.contacts.consent_proof says what a record holds)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.contacts.consent_proof import PROOF_COLUMNS, proof_record
from campaigns.csvfiles import CsvChunks
from campaigns.models import Contact, Signup
from campaigns.signup.forms import get_form


def recent_signups(session: Session, form_id: int, limit: int = 50) -> list[tuple[Signup, str]]:
    """The form's latest signups with the address, newest first."""
    return list(session.execute(select(Signup, Contact.email).join(Contact, Contact.id == Signup.contact_id)
                                .where(Signup.form_id == form_id)
                                .order_by(Signup.requested_at.desc(), Signup.id.desc()).limit(limit)))


def export_csv(session: Session, form_id: int, *, page: int = 1000) -> Iterator[str]:
    """The form's consent records as CSV (one row per signup), streamed; safe against formula injection."""
    form = get_form(session, form_id)
    out = CsvChunks()
    out.writerow(PROOF_COLUMNS)
    yield out.take()
    last = 0
    while True:
        rows = session.execute(select(Signup, Contact.email).join(Contact, Contact.id == Signup.contact_id)
                               .where(Signup.form_id == form_id, Signup.id > last).order_by(Signup.id)
                               .limit(page)).all()
        if not rows:
            break
        for signup, email in rows:
            record = proof_record(signup, email, form.name)
            record["topics"] = "; ".join(record["topics"])
            out.writerow(record[c] for c in PROOF_COLUMNS)
        last = rows[-1][0].id
        yield out.take()
    session.rollback()   # end the read transaction now, not when the streamed response is closed
