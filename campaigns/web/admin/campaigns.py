"""Campaign pages: list, starter chooser, composer with live preview, campaign page (test, schedule, send, pause,
resume, cancel) and the live progress JSON."""

from __future__ import annotations

import json
import secrets
from zoneinfo import ZoneInfo

from flask import Response, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from campaigns.composing import brand, contributions, sample
from campaigns.composing import editor as campaign_service
from campaigns.composing import preview as preview_service
from campaigns.composing import starters as starter_service
from campaigns.contacts import records as contact_service
from campaigns.db import parse_id
from campaigns.errors import RapportError, ValidationError
from campaigns.models import Automation, AutomationStep, Campaign, CampaignKind, CampaignStatus, Contact, Sender, Topic
from campaigns.reports import summaries
from campaigns.sending import delivery, localtime, scheduling, test_sends, variants
from campaigns.sending import lifecycle as sending
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.admin.helpers import PREVIEW_CSP, escape_text
from campaigns.web.admin.policy import current_policy
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404
from mailer.compose import CampaignSource, TemplateError

PREVIEW_TTL = 900          # seconds a live preview stays fetchable
PREVIEW_KEY = "rapport:preview:{}"
AUDIENCE_MAX_AGE = 600     # seconds before a big list's audience and forecast are counted again


def _topic_ids() -> list[int]:
    return [t for t in map(parse_id, request.form.getlist("topics")) if t is not None]


def _form_id(value: str | None) -> int | None:
    value = (value or "").strip()
    return parse_id(value)


def _contact_vars(contact: Contact | None) -> dict:
    if contact is None:
        return dict(campaign_service.SAMPLE_CONTACT)
    return contact_service.personalization(contact, [i.interest for i in contact.interests])


# ------------------------------------------------------------------ list and composer

@bp.get("/campaigns")
@login_required
def campaigns():
    # As the dashboard orders them, by the date the table shows: when it started, else when it was created.
    activity = func.coalesce(Campaign.started_at, Campaign.created_at)
    rows = list(db().scalars(select(Campaign).order_by(activity.desc(), Campaign.id.desc())))
    return render_template("admin/campaigns.html", campaigns=rows)


def _render_editor(obj: Campaign | None, form, errors: list[str], status: int = 200,
                   starter: starter_service.Starter | None = None):
    session = db()
    senders = list(session.scalars(select(Sender).order_by(Sender.name)))
    choice = form.get("sender", "custom") if form else campaign_service.sender_choice(obj, senders)
    return render_template(
        "admin/campaign_edit.html", campaign=obj, form=form, errors=errors, starter=starter,
        topics=list(session.scalars(select(Topic).order_by(Topic.name))), kinds=list(CampaignKind),
        relays=rt().settings.relay_names, senders=senders, sender_choice=choice,
        default_sender=(rt().settings.sender_name, rt().settings.sender_email),
        default_language=brand.brand(session, rt().settings).language,
        first_contact=session.scalar(select(Contact).order_by(Contact.id).limit(1)),
    ), status


@bp.route("/campaigns/new", methods=["GET", "POST"])
@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
@editor_required
def campaign_edit(campaign_id: int | None = None):
    """New campaign (a starter chooser first) or the composer of an existing one."""
    session = db()
    obj = get_or_404(db(), Campaign, campaign_id) if campaign_id else None
    if request.method == "POST":
        try:
            saved = campaign_service.save_campaign(session, request.form, obj, _topic_ids(),
                                                   relay_names=rt().settings.relay_names)
            session.commit()
        except RapportError as exc:
            session.rollback()
            obj = get_or_404(db(), Campaign, campaign_id) if campaign_id else None
            return _render_editor(obj, request.form, [str(exc)], 400)
        try:
            scheduling.ready_to_send(session, rt(), saved)
            flash("Campaign saved.", "info")
        except ValidationError as exc:
            flash(f"Saved, but it cannot be sent yet: {exc}", "error")
        return redirect(url_for("admin.campaign", campaign_id=saved.id))
    if obj is not None and obj.status not in campaign_service.EDITABLE_STATUSES:
        flash(f"A {obj.status} campaign can no longer be edited.", "error")
        return redirect(url_for("admin.campaign", campaign_id=obj.id))
    starter = None
    if obj is None:
        key = request.args.get("starter", "")
        starter = starter_service.starter(key) if key else None
        if starter is None:
            if key:
                flash("There is no such starter template; pick one below.", "error")
            return render_template("admin/campaign_new.html", starters=starter_service.starters())
    return _render_editor(obj, None, [], starter=starter)


@bp.get("/campaigns/contacts.json")
@login_required
def campaign_contacts() -> Response:
    """Contacts for the 'preview as' / 'test as' pickers: address or name prefix."""
    found = preview_service.find_contacts(db(), request.args.get("q", ""))
    return jsonify([{"id": c.id, "email": c.email, "name": c.full_name} for c in found])


@bp.post("/campaigns/preview")
@editor_required
def campaign_live_preview() -> Response:
    """Compile the composer's unsaved content, render it as a chosen contact, keep the HTML briefly for the iframes.

    Answers JSON: ok, errors [{line, message}], subject, text (the generated or edited plain text), url.
    """
    session = db()
    form = request.form
    contact = preview_service.contact_by_email_or_id(session, form.get("contact", "")[:320])
    if contact is None:
        contact = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    sender_errors = []
    try:
        sender = campaign_service.preview_sender(session, rt().settings, form, contact)
    except ValidationError as exc:
        sender_errors.append({"line": None, "message": str(exc)})
        sender = campaign_service.preview_sender(session, rt().settings, {"sender": "default"}, contact)
    content = "\n".join(str(form.get(k, "")) for k in ("subject", "mjml", "text_body"))
    for contributor in contributions.contributors():
        try:   # content showing a coupon or survey names the missing choice, as saving would
            contributor.choose(session, form, None, content)
        except ValidationError as exc:
            sender_errors.append({"line": None, "message": str(exc)})
    kind = form.get("kind", CampaignKind.NURTURE)
    source = CampaignSource(mjml=campaign_service.form_text(form.get("mjml")), subject=form.get("subject", "").strip(),
                            preheader=form.get("preheader", "").strip(),
                            text_body=campaign_service.form_text(form.get("text_body")),
                            transactional=form.get("kind") == CampaignKind.TRANSACTIONAL)
    found = sample.attachments(session, {name: _form_id(form.get(name)) for name in contributions.attributes_of(None)},
                               base_url=rt().settings.base_url, tokens=rt().tokens)
    if "survey_block" not in found.extras:
        # No survey chosen (named above when the content asks for one): preview where its links go instead of
        # failing a second time, in the template engine's words. Saving and sending still refuse.
        found.extras.update({"survey_url": lambda answer=None: "#survey", "survey_block": lambda: "",
                             "survey": {"question": "", "options": []}})
    contact_vars = _contact_vars(contact)
    contact_email = contact.email if contact else ""
    session.commit()   # end the transaction before rendering: a slow template must not hold a database lock
    result = preview_service.preview(source, kind, sender, contact_vars, found.extras, found)
    out = result.as_json()
    out["errors"] = sender_errors + out["errors"]
    out["ok"] = not out["errors"]
    out["contact"] = contact_email
    out["from"] = f"{sender['name']} <{sender['email']}>"
    out["url"] = None
    if result.html:
        token = secrets.token_urlsafe(18)
        rt().redis.set(PREVIEW_KEY.format(token), json.dumps({"user": current_user.id, "html": result.html}),
                       ex=PREVIEW_TTL)
        out["url"] = url_for("admin.campaign_preview_body", token=token)
    return jsonify(out)


@bp.get("/campaigns/preview/<token>")
@login_required
def campaign_preview_body(token: str) -> Response:
    """A live preview's HTML, for its own sandboxed iframe, under the preview CSP."""
    raw = rt().redis.get(PREVIEW_KEY.format(token[:64]))
    stored = json.loads(raw) if raw else None
    if stored is None or stored.get("user") != current_user.id:
        html = "<p style='font-family:sans-serif;color:#64748b'>This preview has expired. Edit to refresh it.</p>"
    else:
        html = stored["html"]
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP,
                                                         "Cache-Control": "no-store"})


# ------------------------------------------------------------------ campaign page

@bp.get("/campaigns/<int:campaign_id>")
@login_required
def campaign(campaign_id: int):
    session = db()
    obj = get_or_404(db(), Campaign, campaign_id)
    error = ""
    if obj.status in campaign_service.EDITABLE_STATUSES:
        try:
            scheduling.ready_to_send(session, rt(), obj)
        except ValidationError as exc:
            error = str(exc)
    name, email = campaign_service.from_identity(obj, rt().settings)
    g.audience = _audience(obj)
    first = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    try:    # the subject a person reads, not its template code
        extras = campaign_service.sample_extras(session, contributions.attributes_of(obj), rt().settings.base_url,
                                                rt().tokens)
        subject_sample = campaign_service.compiled(obj).render_subject(
            {**extras, "contact": _contact_vars(first), "sender": campaign_service.sender_context(
                name, email, campaign_service.postal_address(session, rt().settings))})
    except (RapportError, TemplateError):
        subject_sample = ""
    # A draft an automation copies for each run: pressing Send now on it mails its whole audience at once.
    used_by = list(session.scalars(
        select(Automation).join(AutomationStep, AutomationStep.automation_id == Automation.id)
        .where(AutomationStep.template_id == obj.id).distinct().order_by(Automation.name)))
    return render_template("admin/campaign.html", campaign=obj, error=error, subject_sample=subject_sample,
                           automations=used_by, ab_test=variants.test_of(session, obj.id),
                           subject_for=first.email if first else "a sample contact",
                           audience=g.audience,
                           base_url_warning=campaign_service.base_url_warning(rt().settings),
                           progress=sending.progress(session, campaign_id, current_policy()),
                           can_resend_unknown=current_user.role in ("admin", "editor")
                           and obj.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.FINISHED),
                           from_owner=obj.from_email == campaign_service.FROM_OWNER, from_line=f"{name} <{email}>",
                           timezones=scheduling.timezones(),
                           local_plan=localtime.plan(obj, (g.audience.value or {}).get("zones") or {})
                           if obj.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED) else [])


@bp.app_template_global()
def zone_choices() -> list[str]:
    return scheduling.timezones()


@bp.app_template_global()
def late_choices() -> dict[str, str]:
    return localtime.LATE_CHOICES


def _audience(obj: Campaign) -> summaries.Summary:
    """The audience count and policy forecast: live on a small list, else from a job (refreshed when the campaign's
    choices changed, or on "Forecast the audience as of now")."""
    session = db()
    max_age = 60 if request.args.get("forecast") == "1" else AUDIENCE_MAX_AGE
    summary = summaries.get(rt(), session, "audience", obj.id, max_age=max_age)
    if summary.value is not None and summary.value["fingerprint"] != summaries.audience_fingerprint(session, obj):
        summaries.forget(rt(), "audience", obj.id)      # figures of another audience: never shown
        summaries.request(rt(), "audience", obj.id)
        return summaries.Summary(None, None, refreshing=True)
    return summary


@bp.get("/campaigns/<int:campaign_id>/preview")
@login_required
def campaign_preview(campaign_id: int) -> Response:
    """The saved campaign's HTML for the preview iframe, personalized as a chosen (or the first) contact."""
    session = db()
    obj = get_or_404(db(), Campaign, campaign_id)
    contact = preview_service.contact_by_email_or_id(session, request.args.get("contact", "")[:320])
    if contact is None:
        contact = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    try:
        mailer = delivery.CampaignMailer.for_campaign(rt(), session, obj)
        owner = mailer.owners.get(contact.owner_id) if contact is not None and contact.owner_id else None
        extras = campaign_service.sample_extras(session, contributions.attributes_of(obj), rt().settings.base_url,
                                                rt().tokens)
        ctx = {**extras, "contact": _contact_vars(contact), "sender": owner[1] if owner else mailer.sender,
               "unsubscribe_url": "#unsubscribe", "preferences_url": "#preferences"}
        session.commit()   # no transaction is held while the template renders
        html = mailer.compiled.render(ctx, lambda i: mailer.compiled.links[i], "").html
    except (RapportError, TemplateError) as exc:
        html = f"<p style='font-family:sans-serif;color:#b91c1c'>Cannot preview: {escape_text(str(exc))}</p>"
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})


@bp.post("/campaigns/<int:campaign_id>/test")
@editor_required
def campaign_test(campaign_id: int):
    """Send a [Test] copy to up to 10 addresses, personalized as a chosen contact (or a blank sample)."""
    session = db()
    obj = get_or_404(db(), Campaign, campaign_id)
    addresses = request.form.get("addresses", "")[:5000].replace(";", ",").replace("\n", ",").split(",")
    as_value = request.form.get("as_contact", "").strip()[:320]
    as_contact = preview_service.contact_by_email_or_id(session, as_value) if as_value else None
    if as_value and as_contact is None:
        flash(f"There is no contact {as_value}; pick one from the suggestions or leave it empty.", "error")
        return redirect(url_for("admin.campaign", campaign_id=campaign_id))
    try:
        session.commit()   # the test is sent from a session of its own
        sent = test_sends.send_test(rt(), obj.id, addresses, as_contact_id=as_contact.id if as_contact else None)
        who = f" as {as_contact.email}" if as_contact else ""
        audit(Action.CAMPAIGN_TEST, f"campaign {obj.id}", f"to {', '.join(sent)}{who}")
        flash(f"Test sent to {', '.join(sent)}{who}.", "info")
    except (RapportError, TemplateError) as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/schedule")
@editor_required
def campaign_schedule(campaign_id: int):
    """Schedule at a wall-clock time in a chosen time zone."""
    session = db()
    obj = get_or_404(db(), Campaign, campaign_id)
    tz = request.form.get("timezone", "UTC")[:64]
    try:
        when = scheduling.parse_local_time(request.form.get("when", "")[:40], tz)
        local = when.astimezone(ZoneInfo(tz.strip()))
        label = f"scheduled for {local:%Y-%m-%d %H:%M} {tz} by {current_user.name}"
        scheduling.schedule(session, rt(), obj, when, label)
        audit(Action.CAMPAIGN_SCHEDULE, f"campaign {obj.id}", f"{obj.name}: for {local:%Y-%m-%d %H:%M} {tz}")
        flash(f"Scheduled for {local:%A %d %B %Y, %H:%M} ({tz}).", "info")
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/<any(send, resume, pause, cancel, unschedule):action>")
@editor_required
def campaign_action(campaign_id: int, action: str):
    session = db()
    obj = get_or_404(db(), Campaign, campaign_id)
    try:
        if action in ("send", "resume"):
            resuming = obj.status == CampaignStatus.PAUSED
            scheduling.ready_to_send(session, rt(), obj)
            sending.start(session, rt(), obj)
            flash("Sending resumed." if resuming else "Sending started.", "info")
        elif action == "pause":
            sending.pause(session, obj, f"paused by {current_user.name}")
            flash("Paused. Press Resume to continue.", "info")
        elif action == "unschedule":
            scheduling.unschedule(session, obj)
            flash("No longer scheduled; the campaign is a draft again.", "info")
        else:
            sending.cancel(session, obj)
            flash("Cancelled.", "info")
        audit(Action(f"campaign.{action}"), f"campaign {obj.id}", obj.name)
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/resend-unknown")
@editor_required
def campaign_resend_unknown(campaign_id: int):
    """Queue the sends whose outcome is unknown again, with their own Message-IDs (a person's decision)."""
    session = db()
    obj = get_or_404(db(), Campaign, campaign_id)
    try:
        n = sending.resend_unknown(rt(), session, obj)
        session.commit()
        flash(f"{n} message{'s' if n != 1 else ''} queued again with the same Message-ID." if n
              else "Nothing to resend: no outcome is unknown.", "info")
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.get("/campaigns/<int:campaign_id>/progress")
@login_required
def campaign_progress(campaign_id: int) -> Response:
    """Live counters for the progress bar (sent, held, failed, skipped, remaining)."""
    get_or_404(db(), Campaign, campaign_id)
    return jsonify(sending.progress(db(), campaign_id, current_policy()))

