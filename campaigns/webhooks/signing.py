"""Standard Webhooks signatures (https://www.standardwebhooks.com): secrets `whsec_<base64>`, and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: whsec_ and 32 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key inside a whsec_ secret."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """The `webhook-signature` value for one attempt."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(key_of(secret), f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, event_id: int, timestamp: int, body: str) -> dict[str, str]:
    """Every header of one attempt: the id stays the same across retries, so receivers can drop duplicates."""
    msg_id = f"msg_{event_id}"
    return {"content-type": "application/json", "user-agent": "Rapport-Webhooks/1",
            "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, msg_id, timestamp, body)}

