"""Admin: send a campaign as post (layout, labels, return address, QR link), follow the print run's progress,
download its PDF, label sheet and CSV; and a contact's "no post" choice on the contact page."""

from __future__ import annotations

import dataclasses
import logging

from flask import abort, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from campaigns import storage
from campaigns.accounts.settings_store import postal_address
from campaigns.composing.editor import get_campaign
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import LabelSheet, PostLayout, PostRun, PostRunStatus
from campaigns.post import addresses, runs, selection
from campaigns.reports import summaries
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt

logger = logging.getLogger(__name__)
POST_MAX_AGE = 600      # seconds before a big list's post eligibility is counted again

LAYOUT_LABELS = {PostLayout.DIN5008: "Letter, A4, DIN 5008 window envelope (DL, C5/6)",
                 PostLayout.US10: "Letter, US Letter, #10 window envelope",
                 PostLayout.CARD_A6: "Postcard, A6"}
SHEET_LABELS = {LabelSheet.L7160: "Avery L7160 (A4, 21 labels)",
                LabelSheet.AVERY5160: "Avery 5160 (US Letter, 30 labels)"}


def _campaign(campaign_id: int):
    return get_campaign(db(), campaign_id)


@bp.route("/campaigns/<int:campaign_id>/post", methods=["GET", "POST"])
@login_required
def campaign_post(campaign_id: int):
    session = db()
    campaign = _campaign(campaign_id)
    status = 200
    form = request.form if request.method == "POST" else None
    if request.method == "POST":
        if current_user.role not in ("admin", "editor"):
            abort(403)
        try:
            run = runs.create_run(session, campaign, request.form, created_by=current_user.email)
            session.commit()
            runs.enqueue(rt(), run.id)
            return redirect(url_for("admin.post_run", run_id=run.id), code=303)
        except (ValidationError, InvalidState) as exc:
            session.rollback()
            flash(str(exc), "error")
            campaign, status = _campaign(campaign_id), 400
    history = list(session.scalars(select(PostRun).where(PostRun.campaign_id == campaign.id)
                                   .order_by(PostRun.id.desc())))
    summary = _eligibility(campaign)
    counts = selection.Eligibility(**{f.name: summary.value[f.name] for f in dataclasses.fields(selection.Eligibility)}
                                   ) if summary.value is not None else None
    return render_template(
        "admin/post/campaign.html", campaign=campaign, form=form, history=history, summary=summary,
        counts=counts, layouts=LAYOUT_LABELS, sheets=SHEET_LABELS,
        default_return=postal_address(session, rt().settings).replace(", ", "\n")), status


def _eligibility(campaign) -> summaries.Summary:
    """Who of the audience can get a letter: counted live on a small list, else by a job and shown with its age;
    figures of another audience or from before a print run are never shown."""
    session = db()
    summary = summaries.get(rt(), session, "post", campaign.id, max_age=POST_MAX_AGE)
    if summary.value is not None and summary.value["fingerprint"] != summaries.post_fingerprint(session, campaign):
        summaries.forget(rt(), "post", campaign.id)
        summaries.request(rt(), "post", campaign.id)
        return summaries.Summary(None, None, refreshing=True)
    return summary


@bp.get("/post/<int:run_id>")
@login_required
def post_run(run_id: int):
    session = db()
    run = runs.get_run(session, run_id)
    return render_template("admin/post/run.html", run=run, campaign=_campaign(run.campaign_id),
                           layouts=LAYOUT_LABELS, sheets=SHEET_LABELS, working=run.status in (
                               PostRunStatus.QUEUED, PostRunStatus.RENDERING))


@bp.post("/post/<int:run_id>/retry")
@editor_required
def post_run_retry(run_id: int) -> Response:
    """Queue a failed run again: it goes on from what it recorded (letters are never chosen twice)."""
    run = runs.get_run(db(), run_id)
    if run.status != PostRunStatus.FAILED:
        flash("Only a failed print run can be tried again.", "error")
    else:
        runs.retry(db(), run)
        db().commit()
        runs.enqueue(rt(), run.id)
    return redirect(url_for("admin.post_run", run_id=run_id), code=303)


@bp.get("/post/<int:run_id>/status")
@login_required
def post_run_status(run_id: int) -> Response:
    run = runs.get_run(db(), run_id)
    return jsonify(status=str(run.status), letters=run.letters, rendered=run.rendered, held=run.held,
                   no_address=run.no_address, no_post=run.no_post, error=run.error)


@bp.get("/post/<int:run_id>/<which>")
@login_required
def post_run_file(run_id: int, which: str) -> Response:
    if which not in runs.FILES:
        abort(404)
    run = runs.get_run(db(), run_id)
    if run.status != PostRunStatus.DONE:
        abort(404)
    name, mimetype = runs.FILES[which]
    try:
        stream = storage.for_settings(rt().settings).open(runs.file_key(run.id, which))
    except FileNotFoundError:
        abort(404)
    return send_file(stream, mimetype=mimetype, as_attachment=which != "letters",
                     download_name=f"campaign-{run.campaign_id}-run-{run.id}-{name}")


@bp.post("/contacts/<int:contact_id>/no-post")
@editor_required
def contact_no_post(contact_id: int) -> Response:
    session = db()
    wanted = request.form.get("no_post") == "1"
    addresses.set_no_post(session, contact_id, wanted, source=f"admin: {current_user.email}")
    session.commit()
    flash("No post for this contact." if wanted else "This contact takes post again.", "info")
    return redirect(url_for("admin.contact", contact_id=contact_id))
