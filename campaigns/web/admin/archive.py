"""Admin pages: a campaign's place in the public archive (shown or not, in which topic), and RSS-to-email feed
mailings (list, create/edit, switch on/off, check now, the last problem and the runs)."""

from __future__ import annotations

import logging

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from campaigns import queueing
from campaigns.accounts.audit import Action
from campaigns.archive import feed_mailings, issues
from campaigns.composing.editor import get_campaign
from campaigns.db import parse_id
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import FeedMailing, Topic
from campaigns.queueing import Job
from campaigns.web.admin.audit import audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)


def _index_url(topic: Topic) -> str:
    return f"{rt().settings.base_url}/archive/{issues.topic_ref(topic)}"


def _archive_url(issue) -> str:
    return f"{_index_url(issue.topic)}/{issue.slug}"


@bp.route("/campaigns/<int:campaign_id>/archive", methods=["GET", "POST"])
@login_required
def campaign_archive(campaign_id: int):
    """Show the campaign in a topic's public archive (once it is sent), or in none."""
    session = db()
    campaign = get_campaign(session, campaign_id)
    status = 200
    if request.method == "POST":
        if current_user.role not in ("admin", "editor"):
            abort(403)
        topic_id = parse_id(request.form.get("topic_id", "")) if request.form.get("archive") == "1" else None
        try:
            if request.form.get("archive") == "1" and topic_id is None:
                raise ValidationError("choose the topic whose archive shows the campaign", field="topic_id")
            before = issues.archive_choice(session, campaign)
            was = (before.topic_id, before.slug) if before is not None else None
            issue = issues.set_archived(session, rt().settings, campaign, topic_id)
            session.commit()
            now = (issue.topic_id, issue.slug) if issue is not None else None
            if now != was:
                audit(Action.CAMPAIGN_ARCHIVE, f"campaign {campaign.id}",
                      f"{campaign.name}: " + (f"public at {_archive_url(issue)}" if issue is not None
                                              else "taken out of the public archive"))
            if issue is None:
                flash("The campaign is not in the public archive.", "info")
            elif issues.published(campaign):
                flash(f"Shown in the public archive: {_archive_url(issue)}", "info")
            else:
                flash("Saved: the campaign appears in the public archive once it has been sent.", "info")
            return redirect(url_for("admin.campaign_archive", campaign_id=campaign_id), code=303)
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            campaign, status = get_campaign(session, campaign_id), 400
    issue = issues.archive_choice(session, campaign)
    topics = list(session.scalars(select(Topic).where(Topic.public.is_(True)).order_by(Topic.name)))
    own = {t.id for t in campaign.topics}
    topics.sort(key=lambda t: (t.id not in own, t.name))
    return render_template("admin/archive/campaign.html", campaign=campaign, issue=issue, topics=topics,
                           shown=issue is not None and issues.published(campaign),
                           url=_archive_url(issue) if issue is not None else "",
                           index_url=_index_url(issue.topic) if issue is not None else "",
                           archives=[(t, n, _index_url(t)) for t, n in issues.archives(session)]), status


@bp.get("/feeds")
@login_required
def feed_mailings_list():
    """Every feed mailing with its feed, schedule, state and last problem."""
    rows = list(db().scalars(select(FeedMailing).order_by(FeedMailing.name)))
    return render_template("admin/archive/feeds.html", rows=rows, schedules=feed_mailings.SCHEDULES)


@bp.route("/feeds/new", methods=["GET", "POST"])
@bp.route("/feeds/<int:mailing_id>", methods=["GET", "POST"])
@login_required
def feed_mailing_edit(mailing_id: int | None = None):
    """Create or edit a feed mailing; its runs (the campaigns it sent) below."""
    session = db()
    obj = get_or_404(session, FeedMailing, mailing_id) if mailing_id else None
    form = None
    if request.method == "POST":
        if current_user.role not in ("admin", "editor"):
            abort(403)
        try:
            saved = feed_mailings.save_mailing(session, request.form, obj)
            session.commit()
            flash("Feed mailing saved." + ("" if saved.active else " It is off: switch it on to start checking."),
                  "info")
            return redirect(url_for("admin.feed_mailing_edit", mailing_id=saved.id), code=303)
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            form = request.form
            obj = session.get(FeedMailing, mailing_id) if mailing_id else None
    return render_template(
        "admin/archive/feed_edit.html", mailing=obj, form=form, schedules=feed_mailings.SCHEDULES,
        templates=feed_mailings.template_choices(session, obj.template_id if obj else None),
        runs=feed_mailings.runs(session, obj.id) if obj else [], max_items=feed_mailings.MAX_ITEMS,
    ), 400 if form is not None else 200


@bp.post("/feeds/<int:mailing_id>/delete")
@editor_required
def feed_mailing_delete(mailing_id: int):
    """Delete a feed mailing (after the confirmation on its page); the mails it sent stay in Campaigns."""
    session = db()
    obj = get_or_404(session, FeedMailing, mailing_id)
    name = obj.name
    feed_mailings.delete_mailing(session, obj)
    session.commit()
    audit(Action.FEED_DELETE, f"feed mailing {mailing_id}", name)
    flash(f"Feed mailing “{name}” deleted. The mails it sent stay under Campaigns, with their reports.", "info")
    return redirect(url_for("admin.feed_mailings_list"), code=303)


@bp.post("/feeds/<int:mailing_id>/<any(activate, pause, check):action>")
@editor_required
def feed_mailing_action(mailing_id: int, action: str):
    session = db()
    obj = get_or_404(session, FeedMailing, mailing_id)
    try:
        if action == "check":
            feed_mailings.check_soon(session, obj)
            session.commit()
            queueing.enqueue(rt().queue, Job.RUN_FEED_MAILINGS)
            flash("Checking the feed now: new items go out in a moment; reload to see the result.", "info")
        else:
            feed_mailings.set_active(session, obj, action == "activate")
            session.commit()
            flash("Switched on: the feed is checked within five minutes." if obj.active else
                  "Paused: the feed is not checked and nothing is sent until you switch it on again.", "info")
    except (ValidationError, InvalidState) as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.feed_mailing_edit", mailing_id=mailing_id), code=303)
