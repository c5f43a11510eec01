"""Admin pages: settings (admins only) — sender identities, DKIM keys, postal address, retries, SMTP relays, users."""

from __future__ import annotations

import logging

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from campaigns.accounts import alignment, dkim_keys
from campaigns.accounts import settings_store as settings_service
from campaigns.accounts import users as accounts
from campaigns.composing import brand
from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import AdminRole
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import admin_required, bp
from campaigns.web.context import db, rt

logger = logging.getLogger(__name__)

POLICY_PATH = "/admin/settings/policy"


@bp.app_template_global("settings_policy_url")
def _policy_url() -> str | None:
    """The policy page's URL when that page is installed (it has its own module)."""
    return POLICY_PATH if any(r.rule == POLICY_PATH for r in current_app.url_map.iter_rules()) else None


@bp.app_template_global("dkim_domain")
def _dkim_domain() -> str:
    """The domain every message is DKIM-signed for (DKIM_DOMAIN)."""
    return rt().settings.dkim_domain


@bp.get("/settings")
@admin_required
def settings_home():
    session = db()
    s = rt().settings
    keys, pending = dkim_keys.dkim_overview(session, s)
    return render_template("admin/settings/index.html", senders=len(settings_service.list_senders(session)),
                           keys=keys, pending=pending, postal=settings_service.postal_address(session, s),
                           relays=settings_service.relays(s), users=accounts.list_users(session),
                           policy_url=_policy_url())


# ------------------------------------------------------------------ sender identities

@bp.route("/settings/senders", methods=["GET", "POST"])
@admin_required
def settings_senders():
    session = db()
    if request.method == "POST":
        try:
            sender = settings_service.save_sender(session, request.form, settings=rt().settings)
            session.commit()
            audit(Action.SENDER_ADD, f"sender {sender.id}", f"{sender.name} <{sender.email}>")
            flash(f"Sender {sender.name} <{sender.email}> added.", "info")
            _warn_unaligned(sender.email)
            return redirect(url_for("admin.settings_senders"))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("admin/settings/senders.html", rows=settings_service.list_senders(session),
                                   form=request.form, error_field=exc.field), 400
    return render_template("admin/settings/senders.html", rows=settings_service.list_senders(session), form={},
                           error_field=None)


@bp.route("/settings/senders/<int:sender_id>", methods=["GET", "POST"])
@admin_required
def settings_sender(sender_id: int):
    session = db()
    try:
        sender = settings_service.get_sender(session, sender_id)
    except NotFound as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.settings_senders"))
    if request.method == "POST":
        try:
            settings_service.save_sender(session, request.form, sender, settings=rt().settings)
            session.commit()
            audit(Action.SENDER_EDIT, f"sender {sender.id}", f"{sender.name} <{sender.email}>")
            flash("Sender saved.", "info")
            _warn_unaligned(sender.email)
            return redirect(url_for("admin.settings_senders"))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("admin/settings/sender.html", sender=sender, form=request.form,
                                   error_field=exc.field), 400
    form = {"name": sender.name, "email": sender.email, "reply_to": sender.reply_to or "",
            "title": sender.title or "", "allow_unaligned": "1" if sender.allow_unaligned else ""}
    return render_template("admin/settings/sender.html", sender=sender, form=form, error_field=None)


def _warn_unaligned(address: str) -> None:
    """Flash the DMARC warning for an address saved with the override."""
    warning = alignment.check_from(address, rt().settings, override=True)
    if warning:
        flash(f"Warning: {warning}", "warn")


@bp.post("/settings/senders/<int:sender_id>/delete")
@admin_required
def settings_sender_delete(sender_id: int):
    session = db()
    try:
        name = settings_service.delete_sender(session, sender_id)
        session.commit()
        audit(Action.SENDER_DELETE, f"sender {sender_id}", name)
        flash(f"Sender {name} deleted; the contacts they owned have no account owner now.", "info")
    except NotFound as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.settings_senders"))


# ------------------------------------------------------------------ DKIM

@bp.route("/settings/dkim", methods=["GET", "POST"])
@admin_required
def settings_dkim():
    session = db()
    s = rt().settings
    if request.method == "POST":
        action = request.form.get("action", "")
        try:
            if action == "generate":
                info = dkim_keys.generate_dkim_key(session, s, request.form.get("kind", ""),
                                                          request.form.get("selector", ""), current_user.email)
                session.commit()
                audit(Action.DKIM_GENERATE, f"dkim {info.selector}", info.kind)
                flash(f"New key {info.selector} generated. Publish its DNS record, then activate it.", "info")
            elif action == "activate":
                info = dkim_keys.activate_pending_key(session, s, current_user.email)
                session.commit()
                audit(Action.DKIM_ACTIVATE, f"dkim {info.selector}", info.kind)
                rt().reload_signer()
                flash(f"Mail is now signed with the key {info.selector}. Other workers switch within a minute.",
                      "info")
            elif action == "check":
                keys, pending = dkim_keys.dkim_overview(session, s)
                selector = request.form.get("selector", "")
                info = next((k for k in [*keys, *([pending] if pending else [])] if k.selector == selector), None)
                if info is None:
                    raise ValidationError("There is no key with that selector.", field="selector")
                result = dkim_keys.check_dns(info, current_app.config.get("RAPPORT_DNS_TXT_RESOLVER"))
                flash(result.message, "info" if result.ok else "warn")
            elif action == "discard":
                dkim_keys.discard_pending_key(session, s, current_user.email)
                session.commit()
                audit(Action.DKIM_DISCARD, "dkim pending key")
                flash("The new key was discarded.", "info")
            else:
                flash("Unknown action.", "error")
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            keys, pending = dkim_keys.dkim_overview(session, s)
            return render_template("admin/settings/dkim.html", keys=keys, pending=pending, domain=s.dkim_domain,
                                   form=request.form, error_field=exc.field), 400
        return redirect(url_for("admin.settings_dkim"))
    keys, pending = dkim_keys.dkim_overview(session, s)
    return render_template("admin/settings/dkim.html", keys=keys, pending=pending, domain=s.dkim_domain,
                           form={}, error_field=None)


# ------------------------------------------------------------------ postal address

@bp.route("/settings/postal-address", methods=["GET", "POST"])
@admin_required
def settings_postal():
    session = db()
    s = rt().settings
    if request.method == "POST":
        try:
            value = settings_service.save_postal_address(session, request.form.get("postal_address", ""),
                                                         current_user.email)
            session.commit()
            audit(Action.POSTAL_ADDRESS, "postal address", value or "cleared (the POSTAL_ADDRESS default applies)")
            flash("Postal address saved." if value else
                  "Postal address cleared: the default from POSTAL_ADDRESS applies.", "info")
            return redirect(url_for("admin.settings_postal"))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("admin/settings/postal.html", value=request.form.get("postal_address", ""),
                                   default=s.postal_address, error=True), 400
    stored = settings_service.get_value(session, settings_service.POSTAL) or ""
    return render_template("admin/settings/postal.html", value=stored, default=s.postal_address, error=False)


# ------------------------------------------------------------------ brand

@bp.route("/settings/brand", methods=["GET", "POST"])
@admin_required
def settings_brand():
    session = db()
    s = rt().settings
    if request.method == "POST":
        try:
            brand.save_brand(session, request.form, current_user.email)
            session.commit()
            flash("Brand saved.", "info")
            return redirect(url_for("admin.settings_brand"))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("admin/settings/brand.html", form=request.form, settings=s,
                                   error_field=exc.field), 400
    stored = settings_service.get_value(session, brand.BRAND) or {}
    return render_template("admin/settings/brand.html", form=stored, settings=s, error_field=None)


# ------------------------------------------------------------------ sending domains

@bp.get("/settings/domains")
@admin_required
def settings_domains():
    session = db()
    s = rt().settings
    keys, _pending = dkim_keys.dkim_overview(session, s)
    resolve = current_app.config.get("RAPPORT_DNS_TXT_RESOLVER") or dkim_keys.resolve_txt
    reports = alignment.domain_reports(alignment.sending_domains(session, s), s,
                                       [(k.record_name, k.txt_value) for k in keys], resolve)
    return render_template("admin/settings/domains.html", reports=reports, settings=s)
# ------------------------------------------------------------------ retries

@bp.route("/settings/retries", methods=["GET", "POST"])
@admin_required
def settings_retries():
    """The retry schedule of temporary (4xx) failures and how long retries go on."""
    session = db()
    s = rt().settings
    form = None
    if request.method == "POST":
        form = request.form
        try:
            saved = settings_service.save_retry_schedule(session, form.get("delays", "")[:400],
                                                         form.get("max_age", "")[:20], current_user.email)
            session.commit()
            flash("Retry schedule saved." if saved else "Retry schedule reset to the defaults.", "info")
            return redirect(url_for("admin.settings_retries"))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
    current = settings_service.retry_schedule(session, s)
    return render_template("admin/settings/retries.html", current=current, form=form,
                           default=settings_service.RetrySchedule(s.retry_delays, s.retry_max_age)), \
        400 if form is not None else 200


# ------------------------------------------------------------------ SMTP relays

@bp.route("/settings/relays", methods=["GET", "POST"])
@admin_required
def settings_relays():
    s = rt().settings
    outcome, tested = None, ""
    status = 200
    if request.method == "POST":
        tested = request.form.get("relay", "")
        try:
            outcome = settings_service.send_relay_test(s, rt().signer, tested, request.form.get("to", ""),
                                                       s.sender_email, current_user.email)
            logger.info("relay test %s by %s: %s %s", tested, current_user.email, outcome.summary, outcome.detail)
            audit(Action.RELAY_TEST, f"relay {tested}", outcome.summary)
            if not outcome.ok:
                status = 502
        except ValidationError as exc:
            flash(str(exc), "error")
            status = 400
    return render_template("admin/settings/relays.html", relays=settings_service.relays(s), outcome=outcome,
                           tested=tested, to=request.form.get("to", current_user.email),
                           capture=s.uses_capture), status


# ------------------------------------------------------------------ users

@bp.route("/settings/users", methods=["GET", "POST"])
@admin_required
def settings_users():
    session = db()
    if request.method == "POST":
        form = accounts.UserForm(email=request.form.get("email", ""), name=request.form.get("name", ""),
                                 role=request.form.get("role", ""), password=request.form.get("password", ""))
        try:
            user = accounts.create_user(session, form)
            session.commit()
            audit(Action.USER_CREATE, f"user {user.id}", f"{user.email} as {user.role}")
            flash(f"User {user.email} created as {user.role}. Give them their password in person or by phone.",
                  "info")
            return redirect(url_for("admin.settings_users"))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("admin/settings/users.html", users=accounts.list_users(session),
                                   roles=list(AdminRole), form=request.form, error_field=exc.field), 400
    return render_template("admin/settings/users.html", users=accounts.list_users(session), roles=list(AdminRole),
                           form={"role": AdminRole.EDITOR.value}, error_field=None)


@bp.post("/settings/users/<int:user_id>")
@admin_required
def settings_user_change(user_id: int):
    session = db()
    action = request.form.get("action", "")
    try:
        if action == "role":
            user = accounts.change_user(session, user_id, role=request.form.get("role", ""))
            message = f"{user.email} is now {user.role}."
        elif action in ("deactivate", "activate"):
            user = accounts.change_user(session, user_id, active=action == "activate")
            message = f"{user.email} is {'active again' if user.active else 'deactivated and cannot log in'}."
        elif action == "password":
            user = accounts.change_user(session, user_id, password=request.form.get("password", ""))
            message = f"New password set for {user.email}."
        else:
            raise ValidationError("Unknown action.")
        session.commit()
        audit(Action(f"user.{action}"), f"user {user.id}", message)
        flash(message, "info")
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.settings_users"))
