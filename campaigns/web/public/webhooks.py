"""Relay event callbacks (docs/webhooks.md): Rapport's normalized JSON format at /webhooks/relay, and the native
payloads of Amazon SES (through SNS), Postmark, Mailgun and SendGrid at /webhooks/relay/<relay>, each checked
with that relay's own authentication scheme and translated (campaigns.feedback.preferences) to the normalized events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import time
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from flask import Response, abort, current_app, jsonify, request

from campaigns import metrics
from campaigns.feedback import ingest
from campaigns.feedback import preferences as feedback
from campaigns.web.context import csrf, db, rt
from campaigns.web.public import bp

logger = logging.getLogger(__name__)
MAX_EVENTS = 1000
SIGNATURE_MAX_AGE = 15 * 60       # Mailgun and SendGrid signatures older than this are refused (replays)


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
    return _apply(events)


def _apply(events: list) -> Response:
    """Apply normalized events one by one and answer what happened to each."""
    results: list[dict] = []
    session = db()
    for i, event in enumerate(events):
        if isinstance(event, dict) and "ignored" in event and "type" not in event:
            results.append({"index": i, "result": "ignored", "detail": event["ignored"]})
            continue
        try:
            out = ingest.apply_relay_event(session, rt(), event)
            session.commit()   # each event on its own: a malformed one later in the batch rolls back only itself
            results.append({"index": i, "result": out.kind, **({"detail": out.detail} if out.detail else {})})
        except ingest.BadEvent as exc:
            session.rollback()
            results.append({"index": i, "result": "rejected", "detail": str(exc)})
    accepted = sum(r["result"] not in ("rejected", "ignored") for r in results)
    # The relay name in the URL was checked against the known formats before this point (bounded labels).
    metrics.record_webhook(rt().redis, (request.view_args or {}).get("relay", "normalized"),
                           [r["result"] for r in results])
    return jsonify({"accepted": accepted, "results": results})


# ---------------------------------------------------------------- relays' native webhooks


def relay_setting(name: str) -> str:
    """A relay credential: the app config key `name`, else the environment variable RAPPORT_<name>."""
    # Kept out of Settings for now so relays can be added without touching it; read per request, cheap.
    return str(current_app.config.get(name) or os.environ.get(f"RAPPORT_{name}", ""))


def _basic_password() -> str:
    auth = request.authorization
    return (auth.password or "") if auth is not None and auth.type == "basic" else ""


def _shared_secret_ok(secret: str) -> bool:
    """The shared secret as HTTP Basic password (user name free), or as a Bearer token."""
    if not secret:
        return False
    given = _basic_password()
    if not given:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header.startswith("Bearer ") else ""
    return bool(given) and hmac.compare_digest(given.encode(), secret.encode())


def _challenge() -> Response:
    """401 with a Basic challenge: SNS (and some relays) send the URL's credentials only after one."""
    resp = jsonify({"error": "authentication required"})
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = 'Basic realm="rapport-webhooks"'
    return resp


def _fresh(timestamp: str) -> bool:
    try:
        return abs(time.time() - float(timestamp)) <= SIGNATURE_MAX_AGE
    except (TypeError, ValueError):
        return False


def _mailgun_ok(payload: object) -> bool:
    """Mailgun: hex HMAC-SHA256 of timestamp + token under the webhook signing key."""
    key = relay_setting("MAILGUN_SIGNING_KEY")
    sig = payload.get("signature") if isinstance(payload, dict) else None
    if not key or not isinstance(sig, dict):
        return False
    timestamp, token, signature = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not _fresh(timestamp) or not token or len(token) > 200:
        return False
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.encode(), expected.encode())


def _sendgrid_ok(body: bytes) -> bool:
    """SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp + raw body, with SendGrid's public key."""
    key_text = relay_setting("SENDGRID_VERIFICATION_KEY").strip()
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    if not key_text or not signature or not _fresh(timestamp):
        return False
    try:
        if key_text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(key_text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(key_text))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return True
    except (ValueError, TypeError, binascii.Error, InvalidSignature):
        return False


_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_sns_certs: dict[str, x509.Certificate] = {}


def _sns_url_ok(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or "")) and not parts.username


def _http_get(url: str) -> bytes:
    """GET a URL (SNS certificates, subscription confirmation); tests swap it via app.config['RELAY_HTTP_GET']."""
    getter: Callable[[str], bytes] | None = current_app.config.get("RELAY_HTTP_GET")
    if getter is not None:
        return getter(url)
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - only https://sns.*.amazonaws.com
        return resp.read(256 * 1024)


def _sns_signature_ok(message: dict) -> bool:
    """Verify an SNS message signature (SignatureVersion 1: SHA1, 2: SHA256) with the certificate SNS names."""
    fields = _SNS_FIELDS.get(str(message.get("Type")))
    cert_url = message.get("SigningCertURL")
    if fields is None or not _sns_url_ok(cert_url) or not str(cert_url).endswith(".pem"):
        return False
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        return False
    canonical = "".join(f"{k}\n{message[k]}\n" for k in fields if isinstance(message.get(k), str))
    try:
        cert = _sns_certs.get(cert_url)
        if cert is None:
            cert = x509.load_pem_x509_certificate(_http_get(cert_url))
            if len(_sns_certs) > 50:
                _sns_certs.clear()
            _sns_certs[cert_url] = cert
        cert.public_key().verify(base64.b64decode(str(message.get("Signature", ""))), canonical.encode(),
                                 padding.PKCS1v15(), algorithm)
        return True
    except (ValueError, TypeError, binascii.Error, InvalidSignature, OSError):
        return False


@bp.post("/webhooks/relay/<relay>")
@csrf.exempt   # each relay authenticates with its own scheme, not a session
def relay_native(relay: str):  # noqa: ANN201
    """Apply a relay's native webhook payload (ses, postmark, mailgun, sendgrid)."""
    if relay not in feedback.RELAY_FORMATS:
        abort(404)
    body = request.get_data(cache=True)
    secret = webhook_secret()
    payload = None
    if relay == "mailgun":
        payload = request.get_json(silent=True)
        ok = _mailgun_ok(payload)
    elif relay == "sendgrid":
        ok = _sendgrid_ok(body) if relay_setting("SENDGRID_VERIFICATION_KEY") else _shared_secret_ok(secret)
    else:   # postmark, ses: the shared secret as Basic auth in the webhook URL (https://rapport:SECRET@host/…)
        ok = _shared_secret_ok(secret)
    if not ok:
        if not secret and not relay_setting("MAILGUN_SIGNING_KEY") and not relay_setting("SENDGRID_VERIFICATION_KEY"):
            abort(404)   # nothing configured: nothing listens here
        return _challenge()
    if payload is None:
        payload = request.get_json(silent=True, force=relay == "ses")   # SNS posts JSON as text/plain
    if payload is None:
        abort(400, "The body must be JSON.")
    if relay == "ses":
        return _sns(payload)
    try:
        events = feedback.relay_events(relay, payload)
    except feedback.BadPayload as exc:
        abort(400, str(exc))
    if not 0 < len(events) <= MAX_EVENTS:
        abort(400, f"Send 1 to {MAX_EVENTS} events.")
    return _apply(events)


def _sns(message: object):  # noqa: ANN202
    """An SNS delivery: verify its signature, confirm a subscription, or apply the SES notification inside."""
    if not isinstance(message, dict) or not _sns_signature_ok(message):
        abort(403, "The SNS message signature does not verify.")
    allowed = [a.strip() for a in relay_setting("SES_TOPIC_ARNS").split(",") if a.strip()]
    if allowed and message.get("TopicArn") not in allowed:
        abort(403, "Messages from this SNS topic are not accepted.")
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        if not _sns_url_ok(message.get("SubscribeURL")):
            abort(400, "SubscribeURL is not an SNS address.")
        try:
            _http_get(str(message["SubscribeURL"]))
        except OSError as exc:
            logger.warning("SNS subscription confirmation failed: %s", exc)
            abort(502, "Could not confirm the SNS subscription; SNS will retry.")
        logger.info("SNS subscription to %s confirmed", message.get("TopicArn"))
        return jsonify({"accepted": 0, "results": [], "subscribed": message.get("TopicArn")})
    if kind != "Notification":
        return jsonify({"accepted": 0, "results": []})
    try:
        events = feedback.relay_events("ses", json.loads(str(message.get("Message", ""))))
    except (ValueError, feedback.BadPayload) as exc:
        abort(400, f"The SNS message does not hold an SES notification: {str(exc)[:200]}")
    return _apply(events[:MAX_EVENTS])
