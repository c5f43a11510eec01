"""Admin: the Replies inbox (open / answered / archived / auto-replies, filtered by campaign and owner), one reply
with its whole text and sanitised HTML, its status, and an answer written here (sent by the reply_mail job)."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from campaigns import queueing
from campaigns.errors import ValidationError
from campaigns.models import Campaign, Contact, Reply, Sender
from campaigns.queueing import Job
from campaigns.replies import inbox
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt

logger = logging.getLogger(__name__)


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


@bp.get("/replies")
@login_required
def replies():
    session = db()
    view = request.args.get("view", "open")
    if view not in inbox.VIEWS:
        view = "open"
    campaign_id, owner_id = _int_arg("campaign"), _int_arg("owner")
    page = inbox.listing(session, view=view, campaign_id=campaign_id, owner_id=owner_id, before=_int_arg("before"))
    campaigns = session.execute(select(Campaign.id, Campaign.name).where(
        Campaign.id.in_(select(Reply.campaign_id).distinct())).order_by(Campaign.name)).all()
    owners = list(session.scalars(select(Sender).order_by(Sender.name)))
    return render_template("admin/replies.html", page=page, view=view, campaign_id=campaign_id, owner_id=owner_id,
                           campaigns=campaigns, owners=owners, views=inbox.VIEWS)


@bp.get("/replies/<int:reply_id>")
@login_required
def reply(reply_id: int):
    session = db()
    item = inbox.get_reply(session, reply_id)
    contact = session.get(Contact, item.contact_id) if item.contact_id else None
    campaign = session.get(Campaign, item.campaign_id) if item.campaign_id else None
    senders, owner_id = inbox.answer_senders(session, item)
    answer_sender = session.get(Sender, item.answer_sender_id) if item.answer_sender_id else None
    return render_template("admin/reply.html", reply=item, contact=contact, campaign=campaign, senders=senders,
                           owner_id=owner_id, answer_sender=answer_sender)


@bp.post("/replies/<int:reply_id>/status")
@editor_required
def reply_status(reply_id: int) -> Response:
    session = db()
    try:
        item = inbox.set_status(session, reply_id, request.form.get("status", ""))
        session.commit()
        flash(f"Reply marked {item.status}.", "info")
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.reply", reply_id=reply_id))


@bp.post("/replies/<int:reply_id>/answer")
@editor_required
def reply_answer(reply_id: int):
    session = db()
    try:
        inbox.write_answer(session, reply_id, request.form, written_by=current_user.name or current_user.email)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.reply", reply_id=reply_id, _anchor="answer"))
    queueing.enqueue(rt().queue, Job.REPLY_MAIL, [reply_id])
    logger.info("answer to reply %s queued by %s", reply_id, current_user.email)
    flash("Answer queued: it goes out in a moment, threaded under the customer's message.", "info")
    return redirect(url_for("admin.reply", reply_id=reply_id))
