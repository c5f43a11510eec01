"""Admin: CSV import (upload, map, progress, error report), CSV export, GDPR export and erasure of a contact."""

from __future__ import annotations

import datetime as dt
import json
import logging

from flask import Response, abort, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import select

from campaigns import queueing, storage
from campaigns.contacts import export_jobs, exports, imports
from campaigns.db import parse_id
from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import Contact, ContactStatus, Topic
from campaigns.queueing import Job
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)

TARGET_LABELS = {"email": "Email", "first_name": "First name", "last_name": "Last name", "phone": "Phone",
                 "address_line1": "Address", "address_line2": "Address (line 2)", "city": "City",
                 "region": "Region", "postal_code": "Postal code", "country": "Country (2 letters)",
                 "timezone": "Time zone", "locale": "Language", "birthday": "Birthday",
                 "interests": "Interests (list)", "topics": "Topics (names → subscribe)",
                 "attribute": "Custom attribute…", "ignore": "Ignore"}


@bp.route("/contacts/import", methods=["GET", "POST"])
@editor_required
def contact_import():
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            flash("Choose a CSV file to upload.", "error")
            return render_template("admin/import.html"), 400
        try:
            saved = imports.save_upload(rt().redis, storage.for_settings(rt().settings), upload.stream,
                                         upload.filename)
        except ValidationError as exc:
            flash(str(exc), "error")
            return render_template("admin/import.html"), 400
        return redirect(url_for("admin.contact_import_map", import_id=saved.id))
    return render_template("admin/import.html")


@bp.route("/contacts/import/<import_id>", methods=["GET", "POST"])
@editor_required
def contact_import_map(import_id: str):
    try:
        upload = imports.load_upload(rt().redis, storage.for_settings(rt().settings), import_id)
    except (NotFound, ValidationError) as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.contact_import"))
    mapping, mode = upload.guesses, request.form.get("mode", imports.Mode.SKIP)
    if request.method == "POST":
        try:
            mapping = imports.parse_mapping(request.form, len(upload.header))
            imports.start(rt().redis, storage.for_settings(rt().settings), import_id, mapping, mode)
        except NotFound as exc:
            flash(str(exc), "error")
            return redirect(url_for("admin.contact_import"))
        except ValidationError as exc:
            flash(str(exc), "error")
            return render_template("admin/import_map.html", upload=upload, mapping=mapping, mode=mode,
                                   labels=TARGET_LABELS), 400
        queueing.enqueue(rt().queue, Job.IMPORT_CONTACTS, import_id)
        audit(Action.IMPORT_START, f"import {import_id}", f"{upload.filename} ({mode})")
        return redirect(url_for("admin.contact_import_status", import_id=import_id))
    return render_template("admin/import_map.html", upload=upload, mapping=mapping, mode=mode,
                           labels=TARGET_LABELS)


@bp.get("/contacts/import/<import_id>/status")
@editor_required
def contact_import_status(import_id: str):
    try:
        state = imports.progress(rt().redis, import_id)
    except NotFound as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.contact_import"))
    return render_template("admin/import_status.html", import_id=import_id, p=state)


@bp.get("/contacts/import/<import_id>/progress")
@editor_required
def contact_import_progress(import_id: str) -> Response:
    return jsonify(imports.progress(rt().redis, import_id))


@bp.get("/contacts/import/<import_id>/errors.csv")
@editor_required
def contact_import_errors(import_id: str) -> Response:
    try:
        report = storage.for_settings(rt().settings).open(imports.errors_key(import_id))
    except FileNotFoundError:
        abort(404)
    return send_file(report, mimetype="text/csv", as_attachment=True, download_name=f"import-errors-{import_id}.csv")


@bp.app_template_filter("export_time")
def export_time(epoch: int) -> str:
    """An export's time stamp, in UTC."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.get("/contacts/export.csv")
@editor_required
def contact_export() -> Response:
    """Exports run as background jobs now: old links land on the export form with their filters."""
    return redirect(url_for("admin.contact_export_form", **request.args.to_dict()))


@bp.get("/contacts/export")
@editor_required
def contact_export_form():
    topics = list(db().scalars(select(Topic).order_by(Topic.name)))
    return render_template("admin/export.html", topics=topics, statuses=list(ContactStatus),
                           chosen_segment=request.args.get("segment", ""),
                           chosen_status=request.args.get("status", ""), chosen_topic=request.args.get("topic", ""),
                           recent=list(export_jobs.states(rt())))


def _form_int(name: str) -> int | None:
    raw = request.form.get(name, "").strip()
    return parse_id(raw)


@bp.post("/contacts/exports")
@editor_required
def contact_export_start():
    """Queue an export of the chosen contacts; the worker writes the file, this page follows it."""
    try:
        export_id = export_jobs.start(rt(), db(), status=request.form.get("status", "")[:20],
                                      topic_id=_form_int("topic"), segment_id=_form_int("segment"),
                                      gzipped=request.form.get("gzip") == "1", requested_by=current_user.email)
    except RapportError as exc:
        flash(f"Cannot export: {exc}", "error")
        return redirect(url_for("admin.contact_export_form"))
    audit(Action.CONTACTS_EXPORT, "contacts", f"export {export_id}: status={request.form.get('status', '') or 'any'} "
                                              f"topic={request.form.get('topic', '') or 'any'} "
                                              f"segment={request.form.get('segment', '') or 'none'}")
    return redirect(url_for("admin.contact_export_status", export_id=export_id), 303)


@bp.get("/contacts/exports/<export_id>")
@editor_required
def contact_export_status(export_id: str):
    try:
        state = export_jobs.get(rt(), export_id)
    except NotFound as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.contact_export_form"))
    return render_template("admin/export_status.html", e=state, keep_hours=rt().settings.export_keep_hours)


@bp.get("/contacts/exports/<export_id>/status")
@editor_required
def contact_export_progress(export_id: str) -> Response:
    state = export_jobs.get(rt(), export_id)
    if state["state"] == "finished":
        state["download_url"] = url_for("admin.contact_export_download", export_id=export_id)
    return jsonify(state)


@bp.get("/contacts/exports/<export_id>/download")
@editor_required
def contact_export_download(export_id: str) -> Response:
    stream, gzipped = export_jobs.file_of(rt(), export_id)
    return send_file(stream, mimetype="application/gzip" if gzipped else "text/csv", as_attachment=True,
                     download_name="contacts.csv.gz" if gzipped else "contacts.csv")


@bp.get("/contacts/<int:contact_id>/gdpr.json")
@editor_required
def contact_gdpr_export(contact_id: int) -> Response:
    data = exports.gdpr_export(db(), contact_id)
    audit(Action.CONTACT_GDPR_EXPORT, f"contact {contact_id}")
    return Response(json.dumps(data, indent=2, ensure_ascii=False), mimetype="application/json",
                    headers={"Content-Disposition": f"attachment; filename=contact-{contact_id}.json"})


@bp.route("/contacts/<int:contact_id>/erase", methods=["GET", "POST"])
@editor_required
def contact_erase(contact_id: int):
    session = db()
    contact = get_or_404(session, Contact, contact_id)
    if request.method == "POST":
        if request.form.get("confirm", "").strip().lower() != contact.email:
            flash("Type the contact's email address to confirm the erasure.", "error")
            return render_template("admin/contact_erase.html", contact=contact), 400
        try:
            exports.erase_contact(session, contact_id, by=current_user.email)
            audit(Action.CONTACT_ERASE, f"contact {contact_id}")   # the address itself is gone: only the id
        except RapportError as exc:
            session.rollback()
            flash(str(exc), "error")
            return redirect(url_for("admin.contact", contact_id=contact_id))
        flash("The contact was erased; only a suppression hash of the address is kept.", "info")
        return redirect(url_for("admin.contacts"))
    return render_template("admin/contact_erase.html", contact=contact)
