"""Relay event callbacks (docs/webhooks.md): Rapport's normalized JSON format at /webhooks/relay, and the native
payloads of Amazon SES (through SNS), Postmark, Mailgun and SendGrid at /webhooks/relay/<relay>.

Checking each relay's credentials and reading its payload is mailer.relays' job; these views pick the relay, map
its errors to HTTP answers and hand the normalized events to campaigns.feedback.ingest.
"""

from __future__ import annotations

import logging

from flask import Response, abort, current_app, jsonify, request

from campaigns import metrics
from campaigns.feedback import ingest
from campaigns.web.context import csrf, db, rt
from campaigns.web.public.blueprint import bp
from mailer.relays import (
    NATIVE_RELAYS,
    MailgunRelay,
    PostmarkRelay,
    RapportRelay,
    Relay,
    RelayAuthError,
    RelayEvent,
    RelayEventType,
    RelayForbidden,
    RelayPayloadError,
    SendGridRelay,
    SesRelay,
)

logger = logging.getLogger(__name__)
MAX_EVENTS = 1000


def webhook_secret() -> str:
    """The shared secret: Settings.webhook_secret (RAPPORT_WEBHOOK_SECRET), or the WEBHOOK_SECRET app config."""
    return rt().settings.webhook_secret or current_app.config.get("WEBHOOK_SECRET", "")


def relay_setting(name: str) -> str:
    """A relay credential from Settings (RAPPORT_<name>, read once at start); an app config key `name` overrides it
    for an app built in code (tests, embedding)."""
    if current_app.config.get(name):
        return str(current_app.config[name])
    value = getattr(rt().settings, name.lower())
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _headers() -> dict[str, str]:
    return dict(request.headers.items())


@bp.post("/webhooks/relay")
@csrf.exempt   # relays authenticate with the shared secret, not a session
def relay_events():
    """Apply a batch of normalized relay events: bounce, complaint, delivered, open, click."""
    secret = webhook_secret()
    if not secret:
        abort(404)   # not configured: nothing listens here
    relay = RapportRelay(secret, max_events=MAX_EVENTS)
    body = request.get_data(cache=True)
    try:
        relay.verify(_headers(), body)
    except RelayAuthError:
        abort(401)
    if not request.is_json:
        abort(400, "The body must be JSON (Content-Type: application/json).")
    try:
        events = relay.parse(body)
    except RelayPayloadError as exc:
        abort(400, str(exc))
    return _apply(events)


def _apply(events: list[RelayEvent]) -> Response:
    """Apply normalized events one by one and answer what happened to each."""
    results: list[dict] = []
    session = db()
    for i, event in enumerate(events):
        if not event.applicable:
            results.append({"index": i, "result": str(event.type), "detail": event.detail})
            continue
        try:
            out = ingest.apply_relay_event(session, rt(), event.as_dict())
            session.commit()   # each event on its own: a malformed one later in the batch rolls back only itself
            results.append({"index": i, "result": out.kind, **({"detail": out.detail} if out.detail else {})})
        except ingest.BadEvent as exc:
            session.rollback()
            results.append({"index": i, "result": str(RelayEventType.REJECTED), "detail": str(exc)})
    accepted = sum(r["result"] not in (RelayEventType.REJECTED, RelayEventType.IGNORED) for r in results)
    # The relay name in the URL was checked against the known formats before this point (bounded labels).
    metrics.record_webhook(rt().redis, (request.view_args or {}).get("relay", "normalized"),
                           [r["result"] for r in results])
    return jsonify({"accepted": accepted, "results": results})


# ---------------------------------------------------------------- relays' native webhooks


def _native_relay(name: str, secret: str) -> Relay:
    """The relay for /webhooks/relay/<name>, with its credentials read as configured today."""
    if name == "ses":
        topics = [a.strip() for a in relay_setting("SES_TOPIC_ARNS").split(",") if a.strip()]
        # Tests swap the HTTP GET for SNS certificates and subscription confirmations via app.config.
        return SesRelay(secret, topic_arns=topics, fetch=current_app.config.get("RELAY_HTTP_GET"))
    if name == "mailgun":
        return MailgunRelay(relay_setting("MAILGUN_SIGNING_KEY"))
    if name == "sendgrid":
        return SendGridRelay(relay_setting("SENDGRID_VERIFICATION_KEY"), secret)
    return PostmarkRelay(secret)   # the shared secret as Basic auth in the webhook URL (https://rapport:SECRET@…)


def _challenge() -> Response:
    """401 with a Basic challenge: SNS (and some relays) send the URL's credentials only after one."""
    resp = jsonify({"error": "authentication required"})
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = 'Basic realm="rapport-webhooks"'
    return resp


@bp.post("/webhooks/relay/<relay>")
@csrf.exempt   # each relay authenticates with its own scheme, not a session
def relay_native(relay: str):
    """Apply a relay's native webhook payload (ses, postmark, mailgun, sendgrid)."""
    if relay not in NATIVE_RELAYS:
        abort(404)
    body = request.get_data(cache=True)
    secret = webhook_secret()
    handler = _native_relay(relay, secret)
    try:
        handler.verify(_headers(), body)
    except RelayForbidden as exc:
        abort(403, str(exc))
    except RelayAuthError:
        if not secret and not relay_setting("MAILGUN_SIGNING_KEY") and not relay_setting("SENDGRID_VERIFICATION_KEY"):
            abort(404)   # nothing configured: nothing listens here
        return _challenge()
    if relay != "ses" and not request.is_json:   # SNS posts JSON as text/plain
        abort(400, "The body must be JSON.")
    try:
        if isinstance(handler, SesRelay):
            topic = handler.confirm_subscription(body)
            if topic is not None:
                logger.info("SNS subscription to %s confirmed", topic)
                return jsonify({"accepted": 0, "results": [], "subscribed": topic})
        events = handler.parse(body)
    except RelayPayloadError as exc:
        abort(400, str(exc))
    except OSError as exc:
        logger.warning("SNS subscription confirmation failed: %s", exc)
        abort(502, "Could not confirm the SNS subscription; SNS will retry.")
    if relay == "ses":
        if not events:      # an SNS message other than a notification: nothing to apply
            return jsonify({"accepted": 0, "results": []})
        return _apply(events[:MAX_EVENTS])
    if not 0 < len(events) <= MAX_EVENTS:
        abort(400, f"Send 1 to {MAX_EVENTS} events.")
    return _apply(events)
