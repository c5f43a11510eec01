"""What every relay webhook comes down to: a :class:`Relay` that checks a request's credentials and turns its body
into normalized :class:`RelayEvent` records, and the errors that say why a request was refused.

Relays differ in how they prove a request is theirs (a shared secret, an HMAC, an ECDSA or RSA signature) and in the
JSON they post; after :meth:`Relay.parse` they no longer differ. Nothing here knows HTTP frameworks: a relay gets the
request's headers as a plain mapping and its body as bytes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

# Signatures that carry a timestamp (Mailgun, SendGrid) are refused when older or newer than this: replays.
SIGNATURE_MAX_AGE = 15 * 60

Clock = Callable[[], float]


class RelayEventType(StrEnum):
    """What a relay reported; the values are the ``type`` strings of the normalized format (docs/webhooks.md)."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    # Not applied, but still answered at their index: something Rapport has no use for, or a malformed event.
    IGNORED = "ignored"
    REJECTED = "rejected"


APPLICABLE = (RelayEventType.BOUNCE, RelayEventType.COMPLAINT, RelayEventType.DELIVERED, RelayEventType.OPEN,
              RelayEventType.CLICK)


class BounceType(StrEnum):
    """A bounce is hard (the address is bad) or soft (try again later); values as stored and posted."""

    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True)
class RelayEvent:
    """One normalized event: the fields of docs/webhooks.md, None where the relay said nothing."""

    type: RelayEventType
    id: str | None = None               # the relay's own event id: a retried delivery is applied once
    rapport_id: str | None = None
    message_id: str | None = None
    recipient: str | None = None
    # As the relay sent it (ISO 8601 or unix seconds); the application parses it and rejects what it cannot read.
    timestamp: object = None
    bounce_type: BounceType | None = None
    status: str | None = None
    smtp_code: int | None = None
    diagnostic: str | None = None
    feedback_type: str | None = None
    url: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    detail: str | None = None           # why an IGNORED or REJECTED entry is not applied

    @classmethod
    def ignored(cls, why: str) -> RelayEvent:
        """An event the relay reported that Rapport has no use for."""
        return cls(RelayEventType.IGNORED, detail=why)

    @classmethod
    def rejected(cls, why: str) -> RelayEvent:
        """An event that breaks the normalized format."""
        return cls(RelayEventType.REJECTED, detail=why)

    @property
    def applicable(self) -> bool:
        """Whether the application should apply it (not ignored, not rejected)."""
        return self.type in APPLICABLE

    def as_dict(self) -> dict[str, Any]:
        """The event in the normalized JSON format, without the fields the relay left empty."""
        values = {k: v for k, v in asdict(self).items() if v is not None and k != "detail"}
        return {k: str(v) if isinstance(v, StrEnum) else v for k, v in values.items()}


class RelayAuthError(Exception):
    """The request does not carry valid credentials of the relay (answer 401 and change nothing)."""


class RelayForbidden(RelayAuthError):
    """Credentials are fine but the payload's own signature or origin is not accepted (answer 403)."""


class RelayPayloadError(ValueError):
    """The body is not a payload of the relay it was posted for (answer 400)."""


class Relay(ABC):
    """One relay's webhook: first :meth:`verify` the request, then :meth:`parse` its body."""

    name: ClassVar[str]

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise RelayAuthError unless the request is the relay's; headers are matched case-insensitively."""

    @abstractmethod
    def parse(self, body: bytes) -> list[RelayEvent]:
        """The normalized events of a verified body, in order; raise RelayPayloadError for a foreign body."""


def header(headers: Mapping[str, str], name: str) -> str:
    """A request header by case-insensitive name, '' when absent."""
    wanted = name.lower()
    return next((str(v) for k, v in headers.items() if k.lower() == wanted), "")


def basic_password(headers: Mapping[str, str]) -> str:
    """The password of HTTP Basic credentials (the user name is free), '' when there are none."""
    scheme, _, data = header(headers, "Authorization").strip().partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(data.strip()).decode("utf-8").partition(":")[2]
    except (binascii.Error, ValueError):     # ValueError covers UnicodeDecodeError
        return ""


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of ``Authorization: Bearer <token>``, '' when there is none."""
    value = header(headers, "Authorization")
    return value[7:].strip() if value.startswith("Bearer ") else ""


def same_secret(given: str, secret: str) -> bool:
    """Constant-time comparison that never accepts an empty secret."""
    return bool(secret) and bool(given) and hmac.compare_digest(given.encode(), secret.encode())


def check_shared_secret(headers: Mapping[str, str], secret: str) -> None:
    """The shared secret as HTTP Basic password or as a Bearer token (relays that cannot sign send it this way)."""
    if not same_secret(basic_password(headers) or bearer_token(headers), secret):
        raise RelayAuthError("the shared secret is missing or wrong")


def fresh(timestamp: str, clock: Clock = time.time) -> bool:
    """Whether a signature's unix timestamp is within SIGNATURE_MAX_AGE of now."""
    try:
        return abs(clock() - float(timestamp)) <= SIGNATURE_MAX_AGE
    except (TypeError, ValueError, OverflowError):
        return False


def json_body(body: bytes, what: str = "The body must be JSON.") -> Any:
    """The body as JSON; RelayPayloadError with ``what`` when it is not JSON, or is JSON null."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise RelayPayloadError(what) from None
    if payload is None:
        raise RelayPayloadError(what)
    return payload
