"""Prize draws: create and edit (rules, window, segment, winners, prize), the entries, CSV export, the draw button
(only after the window closes; pressing it again changes nothing), the winners and the mail that tells them."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from campaigns import recipient_urls
from campaigns.contacts import segments as segment_service
from campaigns.coupons.apology import senders
from campaigns.draws import drawing, notify
from campaigns.draws import service as draws
from campaigns.errors import RapportError
from campaigns.models import Contact, Draw, utcnow
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.admin.helpers import streamed_csv
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)
PAGE = 200


@bp.get("/draws")
@login_required
def draws_index():
    return render_template("admin/draws/index.html", rows=draws.list_draws(db()), state=draws.state)


def _form_values(draw: Draw | None) -> dict[str, str]:
    if draw is None:
        start = utcnow().replace(second=0, microsecond=0)
        return {"name": "", "prize": "", "rules": "", "winners_count": "1", "segment_id": "",
                "opens_at": f"{start:%Y-%m-%dT%H:%M}", "closes_at": f"{start + dt.timedelta(days=14):%Y-%m-%dT%H:%M}"}
    return {"name": draw.name, "prize": draw.prize, "rules": draw.rules, "winners_count": str(draw.winners_count),
            "segment_id": str(draw.segment_id or ""), "opens_at": f"{draw.opens_at:%Y-%m-%dT%H:%M}",
            "closes_at": f"{draw.closes_at:%Y-%m-%dT%H:%M}"}


@bp.route("/draws/new", methods=["GET", "POST"])
@bp.route("/draws/<int:draw_id>/edit", methods=["GET", "POST"])
@editor_required
def draw_edit(draw_id: int | None = None):
    session = db()
    draw = get_or_404(session, Draw, draw_id) if draw_id else None
    values = _form_values(draw)
    if request.method == "POST":
        values = {k: str(request.form.get(k, "")) for k in values}
        try:
            saved = draws.save_draw(session, request.form, draw)
            session.commit()
        except RapportError as exc:
            session.rollback()
            flash(str(exc), "error")
            draw = get_or_404(session, Draw, draw_id) if draw_id else None
            return render_template("admin/draws/edit.html", draw=draw, values=values,
                                   segments=segment_service.list_segments(session)), 400
        audit(Action.DRAW_SAVE, f"draw {saved.id}", saved.name)
        flash("Draw saved. Its seed is committed: the hash is on the public page.", "info")
        return redirect(url_for("admin.draw_show", draw_id=saved.id))
    return render_template("admin/draws/edit.html", draw=draw, values=values,
                           segments=segment_service.list_segments(session))


@bp.get("/draws/<int:draw_id>")
@login_required
def draw_show(draw_id: int):
    session = db()
    draw = get_or_404(session, Draw, draw_id)
    rows = drawing.latest_entries(session, draw.id, PAGE)
    total = drawing.entry_count(session, draw.id)
    winners = drawing.winner_entries(session, draw.id)
    emails = dict(session.execute(select(Contact.id, Contact.email).where(
        Contact.id.in_([w.contact_id for w in winners if w.contact_id]))).all()) if winners else {}
    return render_template("admin/draws/show.html", draw=draw, rows=rows, total=total, state=draws.state(draw),
                           winners=winners, emails=emails, senders=senders(session),
                           public_url=recipient_urls.draw_page(rt().settings.base_url, draw.public_id),
                           subject=notify.default_subject(draw), message=notify.default_message(draw))


@bp.post("/draws/<int:draw_id>/draw")
@editor_required
def draw_draw(draw_id: int):
    session = db()
    draw = get_or_404(session, Draw, draw_id)
    try:
        chosen = drawing.draw(session, draw, actor=current_user.email)
        session.commit()
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(f"Drawn: {len(chosen)} winner(s). The seed is now public.", "info")
    return redirect(url_for("admin.draw_show", draw_id=draw_id))


@bp.post("/draws/<int:draw_id>/notify")
@editor_required
def draw_notify(draw_id: int):
    get_or_404(db(), Draw, draw_id)
    db().commit()   # the mail is written in a session of its own (SQLite: this one must not hold a transaction)
    try:
        done = notify.notify_winners(rt(), draw_id, request.form, written_by=current_user.email)
    except RapportError as exc:
        flash(str(exc), "error")
    else:
        audit(Action.DRAW_NOTIFY, f"draw {draw_id}", f"campaign {done.campaign_id}, {done.queued} winner(s)")
        flash(f"The mail to {done.queued} winner(s) is on its way.", "info")
    return redirect(url_for("admin.draw_show", draw_id=draw_id))


@bp.get("/draws/<int:draw_id>/entries.csv")
@login_required
def draw_export(draw_id: int) -> Response:
    draw = get_or_404(db(), Draw, draw_id)
    audit(Action.DRAW_EXPORT, f"draw {draw.id}", draw.name)
    return streamed_csv(draw.name, "draw", "entries", lambda session: drawing.export_csv(session, draw_id))
