"""REST API keys: create (the secret is returned once), list, revoke, and find the key a request presents.

A key reads `rk_<prefix>_<secret>`. The prefix (12 random characters) is stored in clear, shown in the admin and used
to find the row; the whole key is compared by its SHA-256 in constant time. Keys are 256-bit random tokens, so a
fast hash is enough: nobody can guess one offline, unlike a password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import ApiKey, ApiScope, utcnow

KEY_PATTERN = re.compile(r"rk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
DEFAULT_RATE_LIMIT = 600
MAX_RATE_LIMIT = 100_000
# last_used_at is written at most this often per key: a busy integration must not turn every read into a write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class NewKey:
    """A key just created: the row, and the secret to show once."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(raw: Iterable[str]) -> list[str]:
    """The known scopes among raw, in the enum's order; raises ValidationError for an unknown one or none."""
    wanted = {str(s).strip() for s in raw if str(s).strip()}
    unknown = wanted - set(ApiScope)
    if unknown:
        raise ValidationError(f"unknown scope {sorted(unknown)[0][:50]!r}", field="scopes")
    if not wanted:
        raise ValidationError("choose at least one scope: a key without scopes can do nothing", field="scopes")
    return [s.value for s in ApiScope if s.value in wanted]


def create_key(session: Session, name: str, scopes: Iterable[str], *, rate_limit: int | str = DEFAULT_RATE_LIMIT,
               created_by: str = "") -> NewKey:
    """Add a key (flushed, not committed); the secret in the result is the only copy there will ever be."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError("name the key after the system that uses it (at most 200 characters), e.g. “shop”",
                              field="name")
    try:
        limit = int(str(rate_limit).strip() or DEFAULT_RATE_LIMIT)
    except ValueError:
        raise ValidationError("the rate limit is a whole number of requests per minute", field="rate_limit") from None
    if not 1 <= limit <= MAX_RATE_LIMIT:
        raise ValidationError(f"the rate limit is 1 to {MAX_RATE_LIMIT:,} requests per minute", field="rate_limit")
    chosen = parse_scopes(scopes)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    prefix = "".join(secrets.choice(alphabet) for _ in range(12))
    secret = f"rk_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, prefix=prefix, key_hash=hash_key(secret), scopes=chosen, rate_limit=limit,
                 created_by=created_by[:320])
    session.add(key)
    session.flush()
    return NewKey(key, secret)


def list_keys(session: Session) -> list[ApiKey]:
    """Active keys first, newest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.id.desc())))


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key (flushed, not committed): every later request with it gets 401. The row stays for the record."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("that API key does not exist")
    if key.revoked_at is not None:
        raise InvalidState(f"the key {key.name} was already revoked")
    key.revoked_at = utcnow()
    session.flush()
    return key


def find_key(session: Session, presented: str) -> ApiKey | None:
    """The active key whose secret this is, or None (malformed, unknown, wrong secret or revoked)."""
    match = KEY_PATTERN.fullmatch((presented or "").strip())
    if match is None:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(match.group(0))):
        return None
    return key if key.active else None


def needs_touch(key: ApiKey, now: dt.datetime | None = None) -> bool:
    """Whether last_used_at is older than its resolution (so the caller should record this use)."""
    now = now or utcnow()
    return key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION
