"""Standard Webhooks signatures (https://www.standardwebhooks.com): secrets `whsec_<base64>`, and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.

A secret is stored sealed (AES-256-GCM under a key derived from the server's SECRET_KEY): a copy of the database
alone (a leaked backup) does not let anyone sign webhooks an endpoint would trust. Secrets written before were
stored as they are; `unseal` reads both, and the delivery job seals such a secret the first time it uses it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "whsec_"
SEALED = "whenc1:"       # 12-byte nonce + the 32-byte key encrypted with its 16-byte tag, base64: 87 characters
_AAD = b"rapport webhook endpoint secret"


class SecretUnreadable(Exception):
    """A sealed secret that this server's SECRET_KEY cannot open (the key was changed since)."""


def _cipher(secret_key: str) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=b"rapport-webhook-secret-v1",
                       info=b"webhook-secret").derive(secret_key.encode()))


def seal(secret_key: str, secret: str) -> str:
    """The stored form of a whsec_ secret."""
    nonce = secrets.token_bytes(12)
    return SEALED + base64.b64encode(nonce + _cipher(secret_key).encrypt(nonce, key_of(secret), _AAD)).decode()


def sealed(stored: str) -> bool:
    return stored.startswith(SEALED)


def unseal(secret_key: str, stored: str) -> str:
    """The whsec_ secret from its stored form (one stored before sealing is returned as it is)."""
    if not sealed(stored):
        return stored
    raw = base64.b64decode(stored.removeprefix(SEALED))
    try:
        key = _cipher(secret_key).decrypt(raw[:12], raw[12:], _AAD)
    except InvalidTag:
        raise SecretUnreadable("the endpoint's signing secret cannot be read with this server's SECRET_KEY "
                               "(it was changed); rotate the secret and give the new one to the receiver") from None
    return PREFIX + base64.b64encode(key).decode()


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

