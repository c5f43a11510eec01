"""Admin pages: segments (list, filter builder with a live count, save, delete) and the campaign segment picker."""

from __future__ import annotations

import json
import logging

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from campaigns.contacts import segments as segment_service
from campaigns.errors import RapportError, ValidationError
from campaigns.models import AdminRole, Campaign, Segment, Topic
from campaigns.reports import summaries
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)
SEGMENT_MAX_AGE = 600      # seconds before a big list's saved segment is counted again


@bp.app_template_global()
def segment_choices() -> list[Segment]:
    """Saved segments for pickers (campaign form, contacts list, export)."""
    return segment_service.list_segments(db())


def _topic_names() -> dict[int, str]:
    return dict(db().execute(select(Topic.id, Topic.name)).all())


@bp.get("/segments")
@login_required
def segments():
    session = db()
    rows = segment_service.list_segments(session)
    names = _topic_names()
    summaries = {s.id: _summary(s.definition, names) for s in rows}
    return render_template("admin/segments/list.html", segments=rows, summaries=summaries)


def _summary(definition: dict, names: dict[int, str]) -> str:
    try:
        return segment_service.describe(segment_service.parse_definition(definition), names)
    except ValidationError as exc:
        return f"cannot be evaluated: {exc}"


@bp.route("/segments/new", methods=["GET", "POST"])
@bp.route("/segments/<int:segment_id>", methods=["GET", "POST"])
@login_required
def segment_edit(segment_id: int | None = None):
    session = db()
    segment = get_or_404(db(), Segment, segment_id) if segment_id else None
    if request.method == "POST":
        return _save(segment)
    definition = segment.definition if segment else {"match": "all", "rules": []}
    used_by = list(session.scalars(select(Campaign).where(Campaign.segment_id == segment.id)
                                   .order_by(Campaign.id.desc()))) if segment else []
    return render_template("admin/segments/edit.html", segment=segment, form=None,
                           definition=json.dumps(definition, ensure_ascii=False, indent=1),
                           schema=segment_service.builder_schema(session), used_by=used_by,
                           summary=_summary(definition, _topic_names()))


def _save(segment: Segment | None):
    if current_user.role not in (AdminRole.ADMIN, AdminRole.EDITOR):
        abort(403)
    session = db()
    try:
        saved = segment_service.save_segment(session, request.form, segment)
        session.commit()
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
        return render_template("admin/segments/edit.html", segment=segment, form=request.form,
                               definition=request.form.get("definition", "")[:100_000],
                               schema=segment_service.builder_schema(session), used_by=[], summary=""), 400
    flash(f"Segment {saved.name} saved.", "info")
    return redirect(url_for("admin.segment_edit", segment_id=saved.id))


@bp.post("/segments/<int:segment_id>/delete")
@editor_required
def segment_delete(segment_id: int):
    session = db()
    segment = get_or_404(db(), Segment, segment_id)
    try:
        segment_service.delete_segment(session, segment)
        session.commit()
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.segment_edit", segment_id=segment_id))
    flash(f"Segment {segment.name} deleted.", "info")
    return redirect(url_for("admin.segments"))


@bp.post("/segments/count")
@login_required
def segment_count() -> tuple[Response, int] | Response:
    """Live count for the builder: the definition in, the count, a few matching contacts and a summary out."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return jsonify(error="send the definition as JSON"), 400
    session = db()
    try:
        definition = segment_service.parse_definition(payload.get("definition"))
        size = segment_service.estimate(session, definition, rt().settings.live_count_limit)
        found = segment_service.sample(session, definition)
    except ValidationError as exc:
        return jsonify(error=str(exc)), 400
    # On a big list the builder's count while editing is an estimate from a sample, and says so.
    return jsonify(count=size.count, exact=size.exact, sampled=size.sampled,
                   summary=segment_service.describe(definition, _topic_names()),
                   sample=[{"id": c.id, "email": c.email, "name": c.full_name,
                            "url": url_for("admin.contact", contact_id=c.id)} for c in found])


@bp.get("/segments/<int:segment_id>/count")
@login_required
def segment_saved_count(segment_id: int) -> tuple[Response, int] | Response:
    """The current count of a saved segment (the list page fills its counts from here)."""
    segment = get_or_404(db(), Segment, segment_id)
    summary = summaries.get(rt(), db(), "segment", segment_id, max_age=SEGMENT_MAX_AGE)
    if summary.value is not None and summary.value["definition"] != segment.definition:
        summaries.forget(rt(), "segment", segment_id)     # counted before an edit: never shown
        summaries.request(rt(), "segment", segment_id)
        return jsonify(pending=True)
    if summary.value is None:
        return jsonify(pending=True)
    if summary.value["count"] is None:
        return jsonify(error=summary.value["error"]), 400
    if summary.live:
        return jsonify(count=summary.value["count"])
    return jsonify(count=summary.value["count"], as_of=summary.age())
