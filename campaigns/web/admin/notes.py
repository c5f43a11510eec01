"""Admin: notes on a contact (add, edit, pin, delete) and the contact page's notes, key facts and timeline rows.

Editors and admins write notes; a note is changed or deleted by its author or an admin (campaigns.notes.service).
The contact page itself lives in web/admin/contacts.py; it asks `contact_page_notes` for what this module adds.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from campaigns.errors import ValidationError
from campaigns.models import Contact, Event
from campaigns.notes import service as notes
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db

logger = logging.getLogger(__name__)


def _pinned() -> bool:
    return request.form.get("pinned", "") in ("1", "on", "yes", "true")


def _back(contact_id: int) -> Response:
    return redirect(url_for("admin.contact", contact_id=contact_id, _anchor="notes"))


def contact_page_notes(contact: Contact, timeline: Any, before: int | None) -> dict[str, Any]:
    """What the contact page shows of notes: pinned ones (with the attributes as key facts), the timeline page
    (events older than event `before`, None for the newest) with the notes of its span, and who may edit what."""
    session = db()
    entries = timeline.entries
    newest = session.scalar(select(Event.occurred_at).where(Event.id == before, Event.contact_id == contact.id)) \
        if before is not None else None
    oldest = entries[-1].event.occurred_at if entries and timeline.next_before else None
    in_span = notes.timeline_notes(session, contact.id, newest, oldest)
    return {"pinned_notes": notes.pinned_notes(session, contact.id),
            "timeline_items": notes.merge_timeline(entries, in_span),
            "may_write_notes": notes.may_write(current_user),
            "may_edit_note": lambda note: notes.may_edit(note, current_user)}


@bp.post("/contacts/<int:contact_id>/notes")
@editor_required
def note_add(contact_id: int) -> Response:
    session = db()
    try:
        notes.add_note(session, contact_id, current_user, request.form.get("body", ""), pinned=_pinned())
        session.commit()
        flash("Note added.", "info")
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
    return _back(contact_id)


@bp.route("/contacts/<int:contact_id>/notes/<int:note_id>", methods=["GET", "POST"])
@login_required
def note_edit(contact_id: int, note_id: int):
    session = db()
    note = notes.get_note(session, contact_id, note_id)
    if not notes.may_edit(note, current_user):
        abort(403)
    status = 200
    if request.method == "POST":
        try:
            notes.update_note(session, note, current_user, request.form.get("body", ""), pinned=_pinned())
            session.commit()
            flash("Note saved.", "info")
            return _back(contact_id)
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            note = notes.get_note(session, contact_id, note_id)
            status = 400
    contact = session.get(Contact, contact_id)
    return render_template("admin/notes/edit.html", note=note, contact=contact,
                           body=request.form.get("body", note.body)), status


@bp.post("/contacts/<int:contact_id>/notes/<int:note_id>/delete")
@editor_required
def note_delete(contact_id: int, note_id: int) -> Response:
    session = db()
    try:
        note = notes.get_note(session, contact_id, note_id)
        notes.delete_note(session, note, current_user)
    except notes.NotAllowed:
        abort(403)
    session.commit()
    flash("Note deleted.", "info")
    return _back(contact_id)
