"""Mailgun webhooks: ``{"signature": {...}, "event-data": {...}}``, one event per request (failed, complained,
delivered, opened, clicked…).

Mailgun signs each request inside its body: a hex HMAC-SHA256 of ``timestamp + token`` under the webhook signing
key. A signature older or newer than :data:`~mailer.relays.base.SIGNATURE_MAX_AGE` is refused as a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from mailer.relays.base import (
    BounceType,
    Clock,
    Relay,
    RelayAuthError,
    RelayEvent,
    RelayEventType,
    RelayPayloadError,
    fresh,
    json_body,
)
from mailer.relays.fields import brackets, obj, short


class MailgunRelay(Relay):
    """Mailgun, authenticated by the HMAC in its body under ``signing_key``."""

    name = "mailgun"

    def __init__(self, signing_key: str, *, clock: Clock = time.time) -> None:
        self.signing_key = signing_key
        self.clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            payload = None
        sig = payload.get("signature") if isinstance(payload, dict) else None
        if not self.signing_key or not isinstance(sig, dict):
            raise RelayAuthError("no Mailgun signature (or no signing key configured)")
        timestamp, token, signature = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
        if not fresh(timestamp, self.clock) or not token or len(token) > 200:
            raise RelayAuthError("the Mailgun signature is too old, too new or has no token")
        expected = hmac.new(self.signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise RelayAuthError("the Mailgun signature does not verify")

    def parse(self, body: bytes) -> list[RelayEvent]:
        return translate(json_body(body))


def translate(payload: Any) -> list[RelayEvent]:
    """The normalized event of one Mailgun webhook; RelayPayloadError when it is not one."""
    data = payload.get("event-data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise RelayPayloadError("not a Mailgun webhook (no event-data)")
    message = obj(data.get("message"))
    headers = obj(message.get("headers"))
    variables = obj(data.get("user-variables"))
    base: dict[str, Any] = {
        "rapport_id": short(variables.get("rapport_id"), 200),
        "message_id": brackets(headers.get("message-id")), "recipient": short(data.get("recipient"), 320),
        "id": f"mailgun:{str(data.get('id', ''))[:100]}" if data.get("id") else None,
        "timestamp": data.get("timestamp"),
    }
    event = data["event"]
    if event == "failed":
        status = obj(data.get("delivery-status"))
        code = status.get("code")
        return [RelayEvent(
            RelayEventType.BOUNCE,
            bounce_type=BounceType.HARD if data.get("severity") == "permanent" else BounceType.SOFT,
            smtp_code=code if isinstance(code, int) and not isinstance(code, bool) and 200 <= code <= 599 else None,
            status=short(status.get("enhanced-code"), 11),
            diagnostic=short(status.get("message") or status.get("description"), 1000), **base)]
    if event == "complained":
        return [RelayEvent(RelayEventType.COMPLAINT, **base)]
    if event == "delivered":
        return [RelayEvent(RelayEventType.DELIVERED, **base)]
    if event in ("opened", "clicked"):
        client = obj(data.get("client-info"))
        return [RelayEvent(RelayEventType.OPEN if event == "opened" else RelayEventType.CLICK,
                           url=short(data.get("url"), 2000), user_agent=short(client.get("user-agent"), 300),
                           ip=short(data.get("ip"), 64), **base)]
    return [RelayEvent.ignored(f"Mailgun {event[:40]} events are not used")]
