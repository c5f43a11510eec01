"""Relay event callbacks in Rapport's normalized JSON format (docs/webhooks.md), authenticated by a shared secret."""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import abort, current_app, jsonify, request

from campaigns.app import csrf, db, rt
from campaigns.public import bp
from campaigns.services import ingest

logger = logging.getLogger(__name__)
MAX_EVENTS = 1000


def webhook_secret() -> str:
    """The shared secret: Settings.webhook_secret (RAPPORT_WEBHOOK_SECRET), or the WEBHOOK_SECRET app config."""
    return rt().settings.webhook_secret or current_app.config.get("WEBHOOK_SECRET", "")


def _authenticated(secret: str, body: bytes) -> bool:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), secret.encode()):
        return True
    signature = request.headers.get("X-Rapport-Signature", "")
    if signature.startswith("sha256="):
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature[7:].strip().encode(), expected.encode())
    return False


@bp.post("/webhooks/relay")
@csrf.exempt   # relays authenticate with the shared secret, not a session
def relay_events():  # noqa: ANN201
    """Apply a batch of normalized relay events: bounce, complaint, delivered, open, click."""
    secret = webhook_secret()
    if not secret:
        abort(404)   # not configured: nothing listens here
    body = request.get_data(cache=True)
    if not _authenticated(secret, body):
        abort(401)
    payload = request.get_json(silent=True)
    if payload is None:
        abort(400, "The body must be JSON (Content-Type: application/json).")
    if isinstance(payload, dict):
        events = payload["events"] if "events" in payload else [payload]
    else:
        events = payload
    if not isinstance(events, list) or not 0 < len(events) <= MAX_EVENTS:
        abort(400, f"Send one event, a list, or {{\"events\": [...]}} with 1 to {MAX_EVENTS} events.")
    results: list[dict] = []
    session = db()
    for i, event in enumerate(events):
        try:
            out = ingest.apply_relay_event(session, rt(), event)
            results.append({"index": i, "result": out.kind, **({"detail": out.detail} if out.detail else {})})
        except ingest.BadEvent as exc:
            session.rollback()
            results.append({"index": i, "result": "rejected", "detail": str(exc)})
    accepted = sum(r["result"] not in ("rejected", "ignored") for r in results)
    return jsonify({"accepted": accepted, "results": results})
