"""Events: create and edit one, attach it to a nurture campaign, the answers with counts, mark attendance, CSV."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import select

from campaigns.errors import RapportError
from campaigns.events import attendance, replies, service
from campaigns.models import CalendarEvent, Campaign, CampaignKind
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db
from campaigns.web.lookup import get_or_404


def _campaigns() -> list[Campaign]:
    return list(db().scalars(select(Campaign).where(Campaign.kind == CampaignKind.NURTURE.value)
                             .order_by(Campaign.id.desc()).limit(200)))


@bp.get("/events")
@login_required
def events():
    rows = list(db().scalars(select(CalendarEvent).order_by(CalendarEvent.starts_at.desc())))
    return render_template("admin/events/index.html", rows=rows, when=service.when)


@bp.route("/events/new", methods=["GET", "POST"])
@bp.route("/events/<int:event_id>/edit", methods=["GET", "POST"])
@editor_required
def event_edit(event_id: int | None = None):
    session = db()
    event = get_or_404(session, CalendarEvent, event_id) if event_id else None
    form = None
    if request.method == "POST":
        try:
            saved = service.save(session, event, request.form)
            replies.promote(session, saved.id)      # more places: the waitlist moves up (and is told by mail)
            session.commit()
            flash("Event saved.", "info")
            return redirect(url_for("admin.event_page", event_id=saved.id))
        except RapportError as exc:
            session.rollback()
            flash(str(exc), "error")
            form = request.form
            event = get_or_404(session, CalendarEvent, event_id) if event_id else None
    local = service.local_start(event).strftime("%Y-%m-%dT%H:%M") if event else ""
    return render_template("admin/events/edit.html", event=event, form=form, local=local,
                           campaigns=_campaigns()), 400 if form is not None else 200


@bp.route("/events/<int:event_id>", methods=["GET", "POST"])
@login_required
def event_page(event_id: int):
    session = db()
    event = get_or_404(session, CalendarEvent, event_id)
    if request.method == "POST":     # attendance
        changed = attendance.mark(session, event.id, request.form.getlist("attended"),
                                  request.form.getlist("shown"))
        session.commit()
        flash(f"Attendance saved ({changed} changed).", "info")
        return redirect(url_for("admin.event_page", event_id=event.id))
    campaign = session.get(Campaign, event.campaign_id) if event.campaign_id else None
    figures = attendance.figures(session, event)
    pages = max(1, -(-figures.answered // attendance.PAGE))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
    return render_template("admin/events/event.html", event=event, when=service.when(event), campaign=campaign,
                           figures=figures, invitees=attendance.invitees(session, event.id, page=page),
                           page=page, pages=pages, first=(page - 1) * attendance.PAGE + 1)


@bp.get("/events/<int:event_id>/answers.csv")
@login_required
def event_export(event_id: int) -> Response:
    event = get_or_404(db(), CalendarEvent, event_id)
    return Response(attendance.csv_text(db(), event), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="event-{event.id}-answers.csv"'})
