"""Rapport's own normalized format (docs/webhooks.md): one event, a list, or ``{"events": [...]}``.

Authenticated by the shared secret as ``Authorization: Bearer <secret>``, or by ``X-Rapport-Signature:
sha256=<hex HMAC-SHA256 of the raw body>`` so the secret never travels. Each event is checked field by field; a
malformed one becomes a REJECTED entry at its index instead of failing the whole batch.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from mailer.relays.base import (
    APPLICABLE,
    BounceType,
    Relay,
    RelayAuthError,
    RelayEvent,
    RelayEventType,
    RelayPayloadError,
    header,
    json_body,
    same_secret,
)

SIGNATURE_HEADER = "X-Rapport-Signature"
# Longest accepted value of each text field, in characters.
TEXT_LIMITS = {"rapport_id": 200, "message_id": 998, "recipient": 320, "id": 200, "status": 11,
               "diagnostic": 1000, "feedback_type": 64, "url": 2000, "user_agent": 300, "ip": 64}


class RapportRelay(Relay):
    """The normalized format, authenticated by bearer secret or body HMAC; at most ``max_events`` per request."""

    name = "rapport"

    def __init__(self, secret: str, *, max_events: int = 1000) -> None:
        self.secret = secret
        self.max_events = max_events

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        if not self.secret:
            raise RelayAuthError("no shared secret is configured")
        auth = header(headers, "Authorization")
        if auth.startswith("Bearer ") and same_secret(auth[7:].strip(), self.secret):
            return
        signature = header(headers, SIGNATURE_HEADER)
        if signature.startswith("sha256="):
            expected = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(signature[7:].strip().encode(), expected.encode()):
                return
        raise RelayAuthError("neither a valid bearer secret nor a valid body signature")

    def parse(self, body: bytes) -> list[RelayEvent]:
        payload = json_body(body, "The body must be JSON (Content-Type: application/json).")
        if isinstance(payload, dict):
            events = payload["events"] if "events" in payload else [payload]
        else:
            events = payload
        if not isinstance(events, list) or not 0 < len(events) <= self.max_events:
            raise RelayPayloadError(
                f"Send one event, a list, or {{\"events\": [...]}} with 1 to {self.max_events} events.")
        return [read_event(event) for event in events]


def read_event(event: Any) -> RelayEvent:
    """One normalized event, or a REJECTED entry saying which field breaks the format."""
    if isinstance(event, dict) and "ignored" in event and "type" not in event:
        return RelayEvent.ignored(str(event["ignored"])[:200])
    if not isinstance(event, dict):
        return RelayEvent.rejected("each event must be a JSON object")
    kind = event.get("type")
    if kind not in APPLICABLE:
        return RelayEvent.rejected(f"type must be one of {', '.join(APPLICABLE)}")
    texts: dict[str, str | None] = {}
    for name, limit in TEXT_LIMITS.items():
        value = event.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            return RelayEvent.rejected(f"{name} must be a string of at most {limit} characters")
        texts[name] = value
    # Only a bounce has a bounce type (hard unless said otherwise); other events ignore the field, as they always did.
    bounce_type = event.get("bounce_type", "hard") if kind == "bounce" else None
    if bounce_type is not None and bounce_type not in tuple(BounceType):
        return RelayEvent.rejected("bounce_type must be hard or soft")
    code = event.get("smtp_code")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599):
        return RelayEvent.rejected("smtp_code must be an integer SMTP reply code")
    return RelayEvent(RelayEventType(kind), timestamp=event.get("timestamp"),
                      bounce_type=BounceType(bounce_type) if bounce_type is not None else None, smtp_code=code,
                      **texts)
