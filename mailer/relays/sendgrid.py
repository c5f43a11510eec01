"""SendGrid Event Webhook: a JSON list of events per request (bounce, spamreport, delivered, open, click…).

With a verification key configured, requests must carry SendGrid's Signed Event Webhook headers: an ECDSA P-256 /
SHA-256 signature over ``timestamp + raw body`` under SendGrid's public key (PEM, or base64 DER as SendGrid shows
it), with a timestamp within :data:`~mailer.relays.base.SIGNATURE_MAX_AGE`. Without a key, the shared secret is
accepted instead, as for relays that cannot sign.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailer.relays.base import (
    BounceType,
    Clock,
    Relay,
    RelayAuthError,
    RelayEvent,
    RelayEventType,
    RelayPayloadError,
    check_shared_secret,
    fresh,
    header,
    json_body,
)
from mailer.relays.fields import brackets, short, smtp_code

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SendGridRelay(Relay):
    """SendGrid, authenticated by its ECDSA signature when ``verification_key`` is set, else by ``secret``."""

    name = "sendgrid"

    def __init__(self, verification_key: str, secret: str, *, clock: Clock = time.time) -> None:
        self.verification_key = verification_key.strip()
        self.secret = secret
        self.clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        if not self.verification_key:
            check_shared_secret(headers, self.secret)
            return
        signature = header(headers, SIGNATURE_HEADER)
        timestamp = header(headers, TIMESTAMP_HEADER)
        if not signature or not fresh(timestamp, self.clock):
            raise RelayAuthError("no SendGrid signature, or its timestamp is too old or too new")
        try:
            if self.verification_key.startswith("-----BEGIN"):
                key = serialization.load_pem_public_key(self.verification_key.encode())
            else:
                key = serialization.load_der_public_key(base64.b64decode(self.verification_key))
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise RelayAuthError("the SendGrid verification key is not an elliptic-curve key")
            key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (ValueError, TypeError, binascii.Error, InvalidSignature):
            raise RelayAuthError("the SendGrid signature does not verify") from None

    def parse(self, body: bytes) -> list[RelayEvent]:
        return translate(json_body(body))


def translate(payload: Any) -> list[RelayEvent]:
    """The normalized events of a SendGrid batch; RelayPayloadError when the body is not a list."""
    if not isinstance(payload, list):
        raise RelayPayloadError("SendGrid posts a JSON list of events")
    return [_event(e) for e in payload]


def _event(event: Any) -> RelayEvent:
    """One event of a batch; anything unreadable is ignored rather than failing the batch."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return RelayEvent.ignored("not a SendGrid event")
    kind = event["event"]
    base: dict[str, Any] = {
        "rapport_id": short(event.get("rapport_id"), 200), "message_id": brackets(event.get("smtp-id")),
        "recipient": short(event.get("email"), 320),
        "id": f"sendgrid:{str(event['sg_event_id'])[:100]}" if event.get("sg_event_id") else None,
        "timestamp": event.get("timestamp"),
    }
    if kind == "bounce":
        reason = short(event.get("reason"), 1000)
        return RelayEvent(RelayEventType.BOUNCE,
                          bounce_type=BounceType.SOFT if event.get("type") == "blocked" else BounceType.HARD,
                          status=short(event.get("status"), 11), smtp_code=smtp_code(reason), diagnostic=reason,
                          **base)
    if kind == "spamreport":
        return RelayEvent(RelayEventType.COMPLAINT, **base)
    if kind == "delivered":
        return RelayEvent(RelayEventType.DELIVERED, **base)
    if kind in ("open", "click"):
        return RelayEvent(RelayEventType(kind), url=short(event.get("url"), 2000),
                          user_agent=short(event.get("useragent"), 300), ip=short(event.get("ip"), 64), **base)
    return RelayEvent.ignored(f"SendGrid {kind[:40]} events are not used")
