"""Admin: Settings → Webhooks (admins only) — endpoints with the events they receive, the secret shown once (on
creation and rotation), enable/disable/delete, "send test event", and each endpoint's delivery log with replay of
one delivery or of every failed one since a time. Every change is a POST and audit-logged."""

from __future__ import annotations

import datetime as dt

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from campaigns.db import parse_id
from campaigns.errors import RapportError, ValidationError
from campaigns.models import DeliveryStatus, WebhookEndpoint
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import admin_required, bp
from campaigns.web.context import db, rt
from campaigns.webhook_events import EventType
from campaigns.webhooks import endpoints, log

EVENT_HINTS = {
    EventType.CONTACT_CREATED: "a contact was added (admin, API, import, sign-up, order)",
    EventType.CONTACT_UPDATED: "a contact's details or preferences changed",
    EventType.CONTACT_UNSUBSCRIBED: "a contact left the list or a topic",
    EventType.EMAIL_BOUNCED: "a message bounced (hard, or soft)",
    EventType.EMAIL_COMPLAINED: "a recipient reported a message as spam",
    EventType.EMAIL_OPENED: "a message was opened",
    EventType.EMAIL_CLICKED: "a link in a message was clicked",
    EventType.CAMPAIGN_STARTED: "a campaign started (or resumed) sending",
    EventType.CAMPAIGN_FINISHED: "a campaign finished sending",
    EventType.COUPON_REDEEMED: "a coupon code was redeemed",
    EventType.SURVEY_ANSWERED: "a recipient answered a survey",
    EventType.ORDER_RECORDED: "an order was recorded (API or shop webhook)",
}


@bp.app_template_global("webhook_notices")
def _webhook_notices() -> list[WebhookEndpoint]:
    """Endpoints Rapport disabled after sustained failure: a notice on every admin page for admins."""
    if not current_user.is_authenticated or current_user.role != "admin":
        return []
    return endpoints.auto_disabled(db())


def _form() -> dict:
    form = request.form
    return {"url": form.get("url", "")[:2100], "description": form.get("description", "")[:200],
            "event_types": [t for t in form.getlist("event_types")][:50],
            "include_machine": form.get("include_machine") == "1"}


def _index(form: dict | None = None, secret: str = "", created: WebhookEndpoint | None = None,
           error_field: str | None = None, status: int = 200):
    return render_template("admin/settings/webhooks.html", rows=endpoints.listing(db()), hints=EVENT_HINTS,
                           form=form or {"event_types": []}, secret=secret, created=created,
                           error_field=error_field), status


@bp.route("/settings/webhooks", methods=["GET", "POST"])
@admin_required
def settings_webhooks():
    if request.method != "POST":   # GET and HEAD only read
        return _index()
    session = db()
    form = _form()
    try:
        saved = endpoints.create(session, rt().settings, created_by=current_user.email, **form)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _index(form, error_field=exc.field, status=400)
    audit(Action.WEBHOOK_CREATE, f"webhook {saved.endpoint.id}",
          f"{saved.endpoint.url}: {', '.join(saved.endpoint.event_types)}")
    return _index(secret=saved.secret, created=saved.endpoint)


def _endpoint_page(endpoint: WebhookEndpoint, form: dict | None = None, secret: str = "",
                   error_field: str | None = None, status: int = 200):
    wanted = request.args.get("status", "")
    wanted = wanted if wanted in {s.value for s in DeliveryStatus} else ""
    before = parse_id(request.args.get("before"), big=True)
    rows = log.deliveries(db(), endpoint.id, status=wanted, before=before, limit=log.PAGE + 1)
    more = len(rows) > log.PAGE
    rows = rows[:log.PAGE]
    form = form or {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types,
                    "include_machine": endpoint.include_machine}
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    return render_template("admin/settings/webhook.html", endpoint=endpoint, form=form, hints=EVENT_HINTS,
                           deliveries=rows, more=more, status_filter=wanted, statuses=list(DeliveryStatus),
                           secret=secret, error_field=error_field, since=since), status


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    return endpoints.get(db(), endpoint_id)


@bp.route("/settings/webhooks/<int:endpoint_id>", methods=["GET", "POST"])
@admin_required
def settings_webhook(endpoint_id: int):
    endpoint = _endpoint(endpoint_id)
    if request.method != "POST":   # GET and HEAD only read
        return _endpoint_page(endpoint)
    session = db()
    form = _form()
    try:
        endpoints.change(session, rt().settings, endpoint, **form)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _endpoint_page(_endpoint(endpoint_id), form, error_field=exc.field, status=400)
    audit(Action.WEBHOOK_EDIT, f"webhook {endpoint.id}", f"{endpoint.url}: {', '.join(endpoint.event_types)}")
    flash("Endpoint saved.", "info")
    return redirect(url_for("admin.settings_webhook", endpoint_id=endpoint.id))


@bp.post("/settings/webhooks/<int:endpoint_id>/enable")
@admin_required
def settings_webhook_enable(endpoint_id: int):
    session = db()
    endpoint = _endpoint(endpoint_id)
    enable = request.form.get("enabled") == "1"
    endpoints.set_enabled(session, endpoint, enable)
    if enable:
        endpoints.release_claims(session, endpoint.id)      # what waited is retried now
    session.commit()
    audit(Action.WEBHOOK_ENABLE if enable else Action.WEBHOOK_DISABLE, f"webhook {endpoint.id}", endpoint.url)
    flash("Endpoint enabled: waiting deliveries are posted within a minute." if enable
          else "Endpoint disabled: nothing is posted to it until it is enabled again.", "info")
    return redirect(url_for("admin.settings_webhook", endpoint_id=endpoint.id))


@bp.post("/settings/webhooks/<int:endpoint_id>/rotate")
@admin_required
def settings_webhook_rotate(endpoint_id: int):
    session = db()
    endpoint = _endpoint(endpoint_id)
    secret = endpoints.rotate_secret(session, rt().settings, endpoint)
    session.commit()
    audit(Action.WEBHOOK_ROTATE, f"webhook {endpoint.id}", endpoint.url)
    return _endpoint_page(_endpoint(endpoint_id), secret=secret)


@bp.post("/settings/webhooks/<int:endpoint_id>/delete")
@admin_required
def settings_webhook_delete(endpoint_id: int):
    session = db()
    endpoint = _endpoint(endpoint_id)
    url = endpoint.url
    endpoints.delete(session, endpoint)
    session.commit()
    audit(Action.WEBHOOK_DELETE, f"webhook {endpoint_id}", url)
    flash(f"Endpoint {url} deleted with its delivery log.", "info")
    return redirect(url_for("admin.settings_webhooks"))


@bp.post("/settings/webhooks/<int:endpoint_id>/test")
@admin_required
def settings_webhook_test(endpoint_id: int):
    session = db()
    endpoint = _endpoint(endpoint_id)
    try:
        log.send_test(session, endpoint)
        session.commit()
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.settings_webhook", endpoint_id=endpoint_id))
    audit(Action.WEBHOOK_TEST, f"webhook {endpoint_id}", endpoint.url)
    flash("Test event queued: it appears in the log below within moments (reload).", "info")
    return redirect(url_for("admin.settings_webhook", endpoint_id=endpoint_id))


@bp.post("/settings/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/replay")
@admin_required
def settings_webhook_replay(endpoint_id: int, delivery_id: int):
    session = db()
    try:
        log.replay(session, rt().settings, log.get_delivery(session, endpoint_id, delivery_id))
        session.commit()
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.settings_webhook", endpoint_id=endpoint_id))
    audit(Action.WEBHOOK_REPLAY, f"webhook {endpoint_id}", f"delivery {delivery_id}")
    flash("Delivery queued again.", "info")
    return redirect(url_for("admin.settings_webhook", endpoint_id=endpoint_id))


@bp.post("/settings/webhooks/<int:endpoint_id>/replay-failed")
@admin_required
def settings_webhook_replay_failed(endpoint_id: int):
    session = db()
    endpoint = _endpoint(endpoint_id)
    raw = request.form.get("since", "").strip()[:40]
    try:
        since = dt.datetime.fromisoformat(raw)
    except ValueError:
        flash("Give the time as YYYY-MM-DD HH:MM (UTC).", "error")
        return _endpoint_page(endpoint, error_field="since", status=400)
    since = since.replace(tzinfo=dt.UTC) if since.tzinfo is None else since
    count = log.replay_failed_since(session, rt().settings, endpoint_id, since)
    session.commit()
    audit(Action.WEBHOOK_REPLAY, f"webhook {endpoint_id}", f"{count} failed since {since:%Y-%m-%d %H:%M} UTC")
    flash(f"{count} failed deliver{'y' if count == 1 else 'ies'} since {since:%Y-%m-%d %H:%M} UTC queued again.",
          "info")
    return redirect(url_for("admin.settings_webhook", endpoint_id=endpoint_id))
