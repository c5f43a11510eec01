"""Marketer admin: login, dashboard, contacts, topics, campaigns (compose, preview, test, send), outbox."""

from __future__ import annotations

import logging
from functools import wraps

from flask import Blueprint, Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from campaigns.app import db, rt
from campaigns.errors import RapportError, ValidationError
from campaigns.models import AdminRole, AdminUser, Campaign, CampaignKind, CampaignStatus, Contact, Topic, utcnow
from campaigns.services import campaigns as campaign_service
from campaigns.services import contacts as contact_service
from campaigns.services import sending
from mailer.capture import Outbox
from mailer.compose import TemplateError

logger = logging.getLogger(__name__)
bp = Blueprint("admin", __name__)

# The preview and outbox bodies are marketer/sender HTML: shown only inside a sandboxed iframe, and served with a
# CSP that forbids scripts, forms and plugins even if opened directly.
PREVIEW_CSP = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; img-src * data:; "
               "style-src 'unsafe-inline' *; font-src * data:")
ADMIN_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-src 'self'"


@bp.after_request
def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("Content-Security-Policy", ADMIN_CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp


def editor_required(view):  # noqa: ANN001, ANN201
    """Viewers may look but not change anything."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):  # noqa: ANN202
        if current_user.role not in (AdminRole.ADMIN, AdminRole.EDITOR):
            abort(403)
        return view(*args, **kwargs)

    return wrapped


# ------------------------------------------------------------------ auth

@bp.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        user = db().scalar(select(AdminUser).where(AdminUser.email == email))
        if user and user.active and check_password_hash(user.password_hash, request.form.get("password", "")):
            login_user(user)
            user.last_login_at = utcnow()
            db().commit()
            target = request.args.get("next", "")
            # Only local paths: never let a crafted link send a fresh login elsewhere.
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("admin.dashboard")
            return redirect(target)
        flash("Wrong email or password.", "error")
    return render_template("admin/login.html")


@bp.post("/logout")
@login_required
def logout():  # noqa: ANN201
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))


# ------------------------------------------------------------------ dashboard

@bp.get("/")
@login_required
def dashboard():  # noqa: ANN201
    session = db()
    campaigns = list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(20)))
    counts = contact_service.count_contacts(session)
    return render_template("admin/dashboard.html", campaigns=campaigns, counts=counts,
                           total=sum(counts.values()))


# ------------------------------------------------------------------ contacts

@bp.get("/contacts")
@login_required
def contacts():  # noqa: ANN201
    q = request.args.get("q", "")[:200]
    after = request.args.get("after", "0")
    page = contact_service.list_contacts(db(), query=q, after=int(after) if after.isdigit() else 0)
    return render_template("admin/contacts.html", page=page, q=q)


@bp.route("/contacts/new", methods=["GET", "POST"])
@bp.route("/contacts/<int:contact_id>", methods=["GET", "POST"])
@login_required
def contact(contact_id: int | None = None):  # noqa: ANN201
    session = db()
    obj = contact_service.get_contact(session, contact_id) if contact_id else None
    topics = list(session.scalars(select(Topic).order_by(Topic.name)))
    if request.method == "POST":
        if current_user.role == AdminRole.VIEWER:
            abort(403)
        try:
            saved = contact_service.save_contact(
                session, request.form, obj,
                topic_ids=[int(t) for t in request.form.getlist("topics") if t.isdigit()],
                interests=request.form.get("interests", "").split(","))
            session.commit()
            flash("Contact saved.", "info")
            return redirect(url_for("admin.contact", contact_id=saved.id))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            obj = contact_service.get_contact(session, contact_id) if contact_id else None
            return render_template("admin/contact.html", contact=obj, topics=topics, form=request.form,
                                   subscribed={int(t) for t in request.form.getlist("topics") if t.isdigit()}), 400
    subscribed = {s.topic_id for s in obj.subscriptions if s.subscribed} if obj else set()
    return render_template("admin/contact.html", contact=obj, topics=topics, form=None, subscribed=subscribed)


# ------------------------------------------------------------------ topics

@bp.route("/topics", methods=["GET", "POST"])
@login_required
def topics():  # noqa: ANN201
    session = db()
    if request.method == "POST":
        if current_user.role == AdminRole.VIEWER:
            abort(403)
        name = request.form.get("name", "").strip()
        if not name:
            flash("A topic needs a name.", "error")
        elif session.scalar(select(Topic.id).where(func.lower(Topic.name) == name.lower())):
            flash(f"There is already a topic called {name}.", "error")
        else:
            session.add(Topic(name=name[:200], description=request.form.get("description", "")[:2000]))
            session.commit()
            flash(f"Topic {name} created.", "info")
            return redirect(url_for("admin.topics"))
    from campaigns.models import Subscription

    rows = session.execute(
        select(Topic, func.count(Subscription.contact_id))
        .outerjoin(Subscription, (Subscription.topic_id == Topic.id) & Subscription.subscribed.is_(True))
        .group_by(Topic.id).order_by(Topic.name)).all()
    return render_template("admin/topics.html", rows=rows)


# ------------------------------------------------------------------ campaigns

@bp.get("/campaigns")
@login_required
def campaigns():  # noqa: ANN201
    rows = list(db().scalars(select(Campaign).order_by(Campaign.id.desc())))
    return render_template("admin/campaigns.html", campaigns=rows)


@bp.route("/campaigns/new", methods=["GET", "POST"])
@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
@editor_required
def campaign_edit(campaign_id: int | None = None):  # noqa: ANN201
    session = db()
    obj = campaign_service.get_campaign(session, campaign_id) if campaign_id else None
    topics = list(session.scalars(select(Topic).order_by(Topic.name)))
    errors: list[str] = []
    if request.method == "POST":
        try:
            saved = campaign_service.save_campaign(
                session, request.form, obj, [int(t) for t in request.form.getlist("topics") if t.isdigit()],
                relay_names=rt().settings.relay_names)
            session.commit()
        except RapportError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("admin/campaign_edit.html", campaign=obj, topics=topics, form=request.form,
                                   kinds=list(CampaignKind), errors=[str(exc)],
                                   relays=rt().settings.relay_names), 400
        try:
            campaign_service.validate(saved)
            flash("Campaign saved.", "info")
        except ValidationError as exc:
            flash(f"Saved, but it cannot be sent yet: {exc}", "error")
        return redirect(url_for("admin.campaign", campaign_id=saved.id))
    return render_template("admin/campaign_edit.html", campaign=obj, topics=topics, form=None,
                           kinds=list(CampaignKind), errors=errors, relays=rt().settings.relay_names)


@bp.get("/campaigns/<int:campaign_id>")
@login_required
def campaign(campaign_id: int):  # noqa: ANN201
    session = db()
    obj = campaign_service.get_campaign(session, campaign_id)
    error = ""
    try:
        campaign_service.validate(obj)
    except ValidationError as exc:
        error = str(exc)
    return render_template("admin/campaign.html", campaign=obj, error=error,
                           audience=sending.audience_count(session, obj),
                           progress=sending.progress(session, campaign_id))


@bp.get("/campaigns/<int:campaign_id>/preview")
@login_required
def campaign_preview(campaign_id: int) -> Response:
    """The rendered HTML for the preview iframe, personalized as a chosen (or the first) contact."""
    session = db()
    obj = campaign_service.get_campaign(session, campaign_id)
    contact_id = request.args.get("contact", "")
    contact = session.get(Contact, int(contact_id)) if contact_id.isdigit() else None
    if contact is None:
        contact = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    try:
        mailer = sending.CampaignMailer.for_campaign(rt(), session, obj)
        variables = contact_service.personalization(contact, [i.interest for i in contact.interests]) \
            if contact else {"first_name": "", "email": "preview@example.com"}
        html = mailer.compiled.render(
            {"contact": variables, "sender": mailer.sender, "unsubscribe_url": "#unsubscribe",
             "preferences_url": "#preferences"}, lambda i: mailer.compiled.links[i], "").html
    except (RapportError, TemplateError) as exc:
        html = f"<p style='font-family:sans-serif;color:#b91c1c'>Cannot preview: {_escape(str(exc))}</p>"
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})


@bp.post("/campaigns/<int:campaign_id>/test")
@editor_required
def campaign_test(campaign_id: int):  # noqa: ANN201
    session = db()
    obj = campaign_service.get_campaign(session, campaign_id)
    addresses = request.form.get("addresses", "").replace(";", ",").replace("\n", ",").split(",")
    try:
        sent = sending.send_test(rt(), session, obj, addresses)
        flash(f"Test sent to {', '.join(sent)}.", "info")
    except RapportError as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/<any(send, pause, cancel):action>")
@editor_required
def campaign_action(campaign_id: int, action: str):  # noqa: ANN201
    session = db()
    obj = campaign_service.get_campaign(session, campaign_id)
    try:
        if action == "send":
            sending.start(session, rt(), obj)
            flash("Sending started.", "info")
        elif action == "pause":
            sending.pause(session, obj, f"paused by {current_user.name}")
            flash("Paused. Press Send to resume.", "info")
        else:
            sending.cancel(session, obj)
            flash("Cancelled.", "info")
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.get("/campaigns/<int:campaign_id>/progress")
@login_required
def campaign_progress(campaign_id: int) -> Response:
    return jsonify(sending.progress(db(), campaign_id))


# ------------------------------------------------------------------ outbox

def _outbox() -> Outbox:
    return Outbox(rt().settings.outbox_path)


@bp.get("/outbox")
@login_required
def outbox():  # noqa: ANN201
    box = _outbox()
    before = request.args.get("before") or None
    try:
        entries = box.list(limit=50, before=before)
    except (KeyError, ValueError):
        abort(404)
    return render_template("admin/outbox.html", entries=entries, count=box.count(),
                           capture=rt().settings.uses_capture)


@bp.get("/outbox/<key>")
@login_required
def outbox_message(key: str):  # noqa: ANN201
    try:
        message = _outbox().get(key)
    except KeyError:
        abort(404)
    return render_template("admin/outbox_message.html", message=message)


@bp.get("/outbox/<key>/body")
@login_required
def outbox_body(key: str) -> Response:
    try:
        message = _outbox().get(key)
    except KeyError:
        abort(404)
    body = message.html or f"<pre>{_escape(message.text or '')}</pre>"
    return Response(body, mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


@bp.app_template_filter("status_class")
def status_class(status: str) -> str:
    return {CampaignStatus.RUNNING: "ok", CampaignStatus.FINISHED: "done", CampaignStatus.PAUSED: "warn",
            CampaignStatus.CANCELLED: "muted"}.get(status, "")
# Pages in their own modules register on bp; imported last because they import bp from here.
from campaigns.admin import (  # noqa: E402, F401, I001
    automations, contacts_io, coupons, policy, reports, segments, settings, signups, surveys,
)
