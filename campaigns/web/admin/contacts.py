"""Admin pages: the contacts list (search, segment filter, keyset pages) and the contact page (profile, edit,
interests, orders and lifetime value, subscriptions per topic, event timeline)."""

from __future__ import annotations

import logging

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from campaigns.contacts import birthdays
from campaigns.contacts import records as contact_service
from campaigns.db import parse_id
from campaigns.errors import ValidationError
from campaigns.models import AdminRole, Contact, ContactStatus, Segment
from campaigns.notes import service as notes_service
from campaigns.orders import tiers as loyalty
from campaigns.post import addresses as post_addresses
from campaigns.web.admin.blueprint import bp
from campaigns.web.admin.notes import contact_page_notes
from campaigns.web.context import db
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)


def _id_arg(name: str, *, big: bool = True) -> int | None:
    """An id from the query string (contacts and events have big ids; pass big=False for other tables)."""
    return parse_id(request.args.get(name, ""), big=big)


def _topic_ids() -> list[int]:
    return [t for t in map(parse_id, request.form.getlist("topics")) if t is not None]


@bp.app_template_filter("frequency_words")
def _frequency_words(value: str) -> str:
    """A contact's mail frequency in words."""
    return contact_service.frequency_words(value)


@bp.get("/contacts")
@login_required
def contacts():
    q = request.args.get("q", "")[:200]
    status = request.args.get("status", "")
    if status not in set(ContactStatus):
        status = ""
    newest = request.args.get("order", "newest") != "oldest"
    segment_id = _id_arg("segment", big=False)
    session = db()
    segment = session.get(Segment, segment_id) if segment_id is not None else None
    error = ""
    try:
        page = contact_service.list_contacts(session, query=q, after=_id_arg("after"), before=_id_arg("before"),
                                             status=status, segment_id=segment.id if segment else None,
                                             newest_first=newest)
    except ValidationError as exc:   # a saved segment that can no longer be evaluated
        error = f"The segment {segment.name if segment else ''} cannot be evaluated: {exc}"
        page = contact_service.ContactPage([], None, None)
    args = {k: v for k, v in {"q": q, "status": status, "segment": segment.id if segment else None,
                              "order": "oldest" if not newest else None}.items() if v}
    return render_template("admin/contacts.html", page=page, q=q, status=status, segment=segment,
                           newest=newest, args=args, statuses=list(ContactStatus), error=error,
                           note_hits=notes_service.search(session, q) if q else [])


@bp.route("/contacts/new", methods=["GET", "POST"])
@bp.route("/contacts/<int:contact_id>", methods=["GET", "POST"])
@login_required
def contact(contact_id: int | None = None):
    session = db()
    obj = get_or_404(session, Contact, contact_id) if contact_id else None
    form = None
    subscribed = {s.topic_id for s in obj.subscriptions if s.subscribed} if obj else set()
    status = 200
    if request.method == "POST":
        if current_user.role == AdminRole.VIEWER:
            abort(403)
        try:
            saved = contact_service.save_contact(
                session, request.form, obj,
                topic_ids=_topic_ids(),
                interests=request.form.get("interests", "")[:2000].split(","))
            session.commit()
            flash("Contact saved.", "info")
            return redirect(url_for("admin.contact", contact_id=saved.id))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            obj = session.get(type(obj), contact_id) if obj is not None else None
            form, status = request.form, 400
            subscribed = set(_topic_ids())
    page = contact_service.timeline(session, obj.id, before=_id_arg("events_before")) if obj else None
    notes = contact_page_notes(obj, page, _id_arg("events_before")) if obj else {}
    notes["no_post"] = post_addresses.no_post(session, obj.id) if obj else False
    return render_template(
        "admin/contact.html", contact=obj, form=form, subscribed=subscribed, timeline=page, **notes,
        birthday_text=birthdays.text(obj.birthday) if obj else "",
        topics=contact_service.subscriptions_by_topic(session, obj) if obj else
        [(t, None) for t in contact_service.all_topics(session)],
        totals=contact_service.order_totals(session, obj.id) if obj else [],
        tier_changes=loyalty.changes_of(session, obj.id) if obj else []), status
