"""Admin pages: automations (list, create/edit, switch on/off, runs), the cadence report, and personal apology mail
from a contact's page."""

from __future__ import annotations

import logging

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from campaigns import scheduler
from campaigns.automations import purchases
from campaigns.automations import runs as auto
from campaigns.automations import starter as post_purchase
from campaigns.coupons import apology as apology_service
from campaigns.coupons import pools as coupon_service
from campaigns.db import parse_id
from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import Automation, AutomationTrigger, Contact
from campaigns.reports import summaries
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)
QUIET_MAX_AGE = 600     # seconds before a big list's count of quiet contacts is counted again

TRIGGERS = [
    (AutomationTrigger.DATE, "A contact date", "Birthday, first-order anniversary or a date attribute — on the day or "
                                               "N days before"),
    (AutomationTrigger.YEARLY, "A yearly date", "Holiday greetings: the same date every year"),
    (AutomationTrigger.CRON, "A recurring schedule", "Cron-like, e.g. a monthly coupon on the first Monday"),
    (AutomationTrigger.CADENCE, "Cadence watch", "Everyone not mailed in N days gets a nurture mail"),
    (AutomationTrigger.WELCOME, "Welcome series", "Steps after someone subscribes: day 0, 3, 10…"),
    (AutomationTrigger.ORDER, "An order placed", "Post-purchase: a thank-you at once, follow-ups after N hours or "
                                                 "days, for the orders you choose"),
    (AutomationTrigger.TIER, "Reached a new tier", "A thank-you when a customer moves up a loyalty tier "
     "(write {{ contact.tier }} for the tier)"),
]


def _steps_from_form() -> list[tuple[str, str]]:
    """(delay, template) per step: days for a welcome series (delay_i), hours or days after an order (after_i)."""
    field = "after" if request.form.get("trigger") == AutomationTrigger.ORDER else "delay"
    return [(request.form.get(f"{field}_{i}", "")[:10], request.form.get(f"template_{i}", "")[:12])
            for i in range(auto.MAX_STEPS)]


@bp.get("/automations")
@login_required
def automations():
    """Every automation with its trigger, next run and what it sent; the periodic tasks of the scheduler."""
    session = db()
    tasks, beat = scheduler.status(rt())
    return render_template("admin/automations/index.html", rows=auto.overview(session), describe=auto.describe,
                           tasks=tasks, heartbeat=beat)


@bp.route("/automations/new", methods=["GET", "POST"])
@bp.route("/automations/<int:automation_id>", methods=["GET", "POST"])
@login_required
def automation_edit(automation_id: int | None = None):
    """Create or edit an automation; its runs (the campaigns it sent) below."""
    session = db()
    obj = get_or_404(db(), Automation, automation_id) if automation_id else None
    form = None
    if request.method == "POST":
        if current_user.role not in ("admin", "editor"):
            abort(403)
        try:
            saved = auto.save_automation(session, request.form, _steps_from_form(), obj)
            session.commit()
            flash("Automation saved." + ("" if saved.active else " It is off: switch it on to start sending."),
                  "info")
            return redirect(url_for("admin.automation_edit", automation_id=saved.id))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            form = request.form
            obj = session.get(Automation, automation_id) if automation_id else None
    steps = list(obj.steps) if obj else []
    templates = auto.template_choices(session, [s.template_id for s in steps if s.template_id])
    return render_template(
        "admin/automations/edit.html", automation=obj, form=form, steps=steps, templates=templates,
        triggers=TRIGGERS, date_fields=auto.DATE_FIELDS, max_steps=auto.MAX_STEPS,
        runs=auto.runs_of(session, obj.id) if obj else [], describe=auto.describe, delay_text=purchases.delay_text,
        order_runs=purchases.order_runs(session, obj) if obj and obj.trigger == AutomationTrigger.ORDER else [],
        next_run=auto.next_run(obj, zones=auto.audience_zones(session, obj)) if obj and obj.active else "",
    ), 400 if form is not None else 200


@bp.post("/automations/post-purchase")
@editor_required
def automation_post_purchase():
    """Create the post-purchase starter: thank-you, "How did it go?" survey and review request, switched off."""
    session = db()
    try:
        created = post_purchase.create_post_purchase(session, request.form.get("review_url", "")[:600],
                                                     request.form.get("name", "")[:200])
        session.commit()
    except ValidationError as exc:
        session.rollback()
        flash(f"{exc}", "error")
        return redirect(url_for("admin.automations"))
    flash("Created with its three mails and survey, switched off: read the mails, then switch it on.", "info")
    return redirect(url_for("admin.automation_edit", automation_id=created.id))


@bp.post("/automations/<int:automation_id>/<any(activate, pause):action>")
@editor_required
def automation_toggle(automation_id: int, action: str):
    session = db()
    obj = get_or_404(db(), Automation, automation_id)
    try:
        auto.set_active(session, obj, action == "activate")
        session.commit()
        flash("Switched on: due contacts get their mail from the next minute." if obj.active else
              "Paused: nothing more is sent until you switch it on again.", "info")
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.automation_edit", automation_id=automation_id))


@bp.post("/automations/<int:automation_id>/runs/<int:campaign_id>/resume")
@editor_required
def automation_run_resume(automation_id: int, campaign_id: int):
    """Resume a paused run for the contacts it already has."""
    session = db()
    get_or_404(db(), Automation, automation_id)
    try:
        n = auto.resume_run(rt(), session, campaign_id)
        session.commit()
        flash(f"Resumed: {n} message{'s' if n != 1 else ''} waiting to go.", "info")
    except NotFound:
        raise           # the app answers 404; every other refusal is flashed below
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.automation_edit", automation_id=automation_id))


@bp.get("/automations/cadence")
@login_required
def cadence_report():
    """Subscribed contacts not mailed in N days (default 30), in pages; and the cadence automations."""
    raw_days = request.args.get("days", "30").strip()
    raw_after = request.args.get("after", "")
    after = parse_id(raw_after, big=True)
    error = ""
    days = int(raw_days) if raw_days.isdigit() and len(raw_days) < 6 else 0
    try:
        page = auto.not_contacted(db(), days, after=after, count=False)
    except ValidationError as exc:
        error = f"{exc} (showing 30)"
        days = 30
        page = auto.not_contacted(db(), days, after=after, count=False)
    total = summaries.get(rt(), db(), "quiet", days, max_age=QUIET_MAX_AGE)   # a pass over every contact
    cadence = [r for r in auto.overview(db()) if r.automation.trigger == AutomationTrigger.CADENCE]
    return render_template("admin/automations/cadence.html", page=page, days=days, error=error, cadence=cadence,
                           describe=auto.describe, total=total), 400 if error else 200


@bp.route("/contacts/<int:contact_id>/personal-mail", methods=["GET", "POST"])
@login_required
def contact_apology(contact_id: int):
    """Write and send a personal transactional message (apology, dispute follow-up) to one contact."""
    session = db()
    contact = get_or_404(session, Contact, contact_id)
    form = None
    blocked = ""
    try:
        apology_service.check_reachable(session, contact)
    except ValidationError as exc:
        blocked = str(exc)
    if request.method == "POST":
        if current_user.role not in ("admin", "editor"):
            abort(403)
        try:
            session.commit()   # the apology is written in a session of its own
            result = apology_service.send_apology(rt(), contact.id, request.form, written_by=current_user.name)
            flash(f"Your message to {contact.email} is on its way (it shows on the timeline)." if result.queued
                  else "The message was not queued.", "info")
            return redirect(url_for("admin.contact", contact_id=contact.id, _anchor="timeline"))
        except RapportError as exc:
            session.rollback()
            flash(str(exc), "error")
            form = request.form
    return render_template(
        "admin/automations/apology.html", contact=contact, form=form, blocked=blocked,
        senders=apology_service.senders(session), pools=coupon_service.usable_pools(session),
        default_subject=apology_service.default_subject(contact), default_message=apology_service.DEFAULT_MESSAGE,
        owner_id=contact.owner_id,
    ), 400 if form is not None else 200
