"""Postmark webhooks: one JSON record per request (RecordType Bounce, SpamComplaint, Delivery, Open or Click).

Postmark cannot sign its webhooks, so the request carries Rapport's shared secret as the HTTP Basic password of
the webhook URL (``https://rapport:SECRET@mail.example.com/webhooks/relay/postmark``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailer.relays.base import (
    BounceType,
    Relay,
    RelayEvent,
    RelayEventType,
    RelayPayloadError,
    check_shared_secret,
    json_body,
)
from mailer.relays.fields import obj, short, smtp_code

_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}
_COMPLAINT = {"SpamComplaint", "SpamNotification"}


class PostmarkRelay(Relay):
    """Postmark, authenticated by the shared secret."""

    name = "postmark"

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        check_shared_secret(headers, self.secret)

    def parse(self, body: bytes) -> list[RelayEvent]:
        return translate(json_body(body))


def translate(event: Any) -> list[RelayEvent]:
    """The normalized event of one Postmark record; RelayPayloadError when it is not one."""
    if not isinstance(event, dict) or not isinstance(event.get("RecordType"), str):
        raise RelayPayloadError("not a Postmark webhook (no RecordType)")
    record = event["RecordType"]
    metadata = obj(event.get("Metadata"))
    base: dict[str, Any] = {
        "rapport_id": short(metadata.get("rapport_id") or metadata.get("rapport-id"), 200),
        "recipient": short(event.get("Email") or event.get("Recipient"), 320),
    }
    pm_id = str(event.get("ID") or event.get("MessageID") or "")[:100]
    if record in ("Bounce", "SpamComplaint"):
        kind = str(event.get("Type", ""))
        details = short(event.get("Details") or event.get("Description"), 1000)
        if kind in _COMPLAINT or record == "SpamComplaint":
            return [RelayEvent(RelayEventType.COMPLAINT, id=f"postmark:{pm_id}:complaint",
                               timestamp=event.get("BouncedAt"), **base)]
        if kind not in _HARD | _SOFT:
            return [RelayEvent.ignored(f"Postmark bounce type {kind[:40]} is not a delivery failure")]
        return [RelayEvent(RelayEventType.BOUNCE, bounce_type=BounceType.HARD if kind in _HARD else BounceType.SOFT,
                           id=f"postmark:{pm_id}:bounce", timestamp=event.get("BouncedAt"),
                           smtp_code=smtp_code(details), diagnostic=details, **base)]
    if record == "Delivery":
        return [RelayEvent(RelayEventType.DELIVERED, id=f"postmark:{pm_id}:delivery",
                           timestamp=event.get("DeliveredAt"), **base)]
    if record in ("Open", "Click"):
        geo = obj(event.get("Geo"))
        return [RelayEvent(RelayEventType(record.lower()), id=f"postmark:{pm_id}:{record}:{event.get('ReceivedAt')}",
                           timestamp=event.get("ReceivedAt"), url=short(event.get("OriginalLink"), 2000),
                           user_agent=short(event.get("UserAgent"), 300), ip=short(geo.get("IP"), 64), **base)]
    return [RelayEvent.ignored(f"Postmark {record[:40]} webhooks are not used")]
