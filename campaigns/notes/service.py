"""Notes on contacts: write, edit and delete (the author or an admin), pin, search, and place on the timeline.

A note is what a person who knows the customer wants the next person to know ("allergic to lilies", "daughter Mia
starts school in May"). Structured key facts stay in the contact's attributes; pinned notes stand next to them at
the top of the contact page. GDPR export and erasure read the `Note` table directly (campaigns.contacts.exports).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import AdminRole, AdminUser, Contact, Note, utcnow

MAX_BODY = 10_000
SEARCH_LIMIT = 20


class NotAllowed(RapportError):
    """The user may read the note but not change it: only its author or an admin may."""


def _body(raw: Any) -> str:
    body = str(raw or "").replace("\r\n", "\n").strip()
    if not body:
        raise ValidationError("the note is empty", field="body")
    if len(body) > MAX_BODY:
        raise ValidationError(f"a note holds at most {MAX_BODY:,} characters", field="body")
    return body


def may_write(user: AdminUser) -> bool:
    """Editors and admins write notes; viewers only read them."""
    return user.role in (AdminRole.ADMIN, AdminRole.EDITOR)


def may_edit(note: Note, user: AdminUser) -> bool:
    """A note is changed or deleted by its author (while they may still write) or by an admin."""
    return user.role == AdminRole.ADMIN or (may_write(user) and note.author_id == user.id)


def add_note(session: Session, contact_id: int, author: AdminUser, body: Any, *, pinned: bool = False) -> Note:
    """A new note on the contact by `author`; flushed, the caller commits."""
    if not may_write(author):
        raise NotAllowed("viewers cannot write notes")
    if session.get(Contact, contact_id) is None:
        raise NotFound(f"contact {contact_id} not found")
    note = Note(contact_id=contact_id, author_id=author.id, author_name=(author.name or author.email)[:200],
                body=_body(body), pinned=bool(pinned))
    session.add(note)
    session.flush()
    return note


def get_note(session: Session, contact_id: int, note_id: int) -> Note:
    """The contact's note, or NotFound (also when the id names another contact's note)."""
    note = session.get(Note, note_id)
    if note is None or note.contact_id != contact_id:
        raise NotFound(f"note {note_id} not found")
    return note


def update_note(session: Session, note: Note, user: AdminUser, body: Any, *, pinned: bool) -> Note:
    """Change a note's text and pin; NotAllowed unless `user` wrote it or is an admin. The caller commits."""
    if not may_edit(note, user):
        raise NotAllowed("only the note's author or an admin can change it")
    note.body = _body(body)
    note.pinned = bool(pinned)
    note.updated_at = utcnow()
    note.updated_by = (user.name or user.email)[:200]
    session.flush()
    return note


def delete_note(session: Session, note: Note, user: AdminUser) -> None:
    """Delete a note; NotAllowed unless `user` wrote it or is an admin. The caller commits."""
    if not may_edit(note, user):
        raise NotAllowed("only the note's author or an admin can delete it")
    session.delete(note)
    session.flush()


def pinned_notes(session: Session, contact_id: int) -> list[Note]:
    """The contact's pinned notes, newest first: shown with the key facts at the top of the contact page."""
    return list(session.scalars(select(Note).where(Note.contact_id == contact_id, Note.pinned.is_(True))
                                .order_by(Note.created_at.desc(), Note.id.desc())))


def timeline_notes(session: Session, contact_id: int, newest: dt.datetime | None,
                   oldest: dt.datetime | None) -> list[Note]:
    """The notes written in a timeline page's span (None: no bound on that side), newest first."""
    stmt = select(Note).where(Note.contact_id == contact_id)
    if newest is not None:
        stmt = stmt.where(Note.created_at < newest)
    if oldest is not None:
        stmt = stmt.where(Note.created_at >= oldest)
    return list(session.scalars(stmt.order_by(Note.created_at.desc(), Note.id.desc())))


@dataclass(frozen=True)
class TimelineItem:
    """One row of the contact's timeline: an event (entry) or a note, at its moment."""

    at: dt.datetime
    entry: Any = None       # campaigns.contacts.records.TimelineEntry
    note: Note | None = None


def merge_timeline(entries: Sequence[Any], notes: Sequence[Note]) -> list[TimelineItem]:
    """Events and notes in one list, newest first (events carry `.event.occurred_at`)."""
    items = [TimelineItem(e.event.occurred_at, entry=e) for e in entries]
    items += [TimelineItem(n.created_at, note=n) for n in notes]
    return sorted(items, key=lambda item: item.at, reverse=True)


@dataclass(frozen=True)
class NoteHit:
    """A note that matched a search, with its contact and the words around the match."""

    note: Note
    contact: Contact
    snippet: str


def _snippet(body: str, query: str, width: int = 80) -> str:
    at = body.lower().find(query.lower())
    start = max(at - width // 2, 0) if at >= 0 else 0
    text = " ".join(body[start:start + width + len(query)].split())
    return ("…" if start else "") + text + ("…" if start + width + len(query) < len(body) else "")


def search(session: Session, query: str, limit: int = SEARCH_LIMIT) -> list[NoteHit]:
    """Notes whose text contains `query` (case-insensitive), newest first, with their contacts."""
    query = " ".join(str(query or "").split())[:200]
    if len(query) < 2:
        return []
    pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = session.execute(
        select(Note, Contact).join(Contact, Contact.id == Note.contact_id)
        .where(func.lower(Note.body).like(pattern, escape="\\"))
        .order_by(Note.created_at.desc(), Note.id.desc()).limit(limit)).all()
    return [NoteHit(note, contact, _snippet(note.body, query)) for note, contact in rows]
