"""Redeeming codes (the shop's API) and the bearer tokens that API accepts.

Functions here flush; the caller that opened the session (the API view) commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import CouponApiToken, CouponCode, CouponPool, utcnow

logger = logging.getLogger(__name__)


class RedeemError(RapportError):
    """A code cannot be redeemed; status is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or {}


class CodeStatus(StrEnum):
    """Where a code stands (what the API answers as `status`)."""

    FREE = "free"
    ISSUED = "issued"
    REDEEMED = "redeemed"
    EXPIRED = "expired"


def code_status(code: CouponCode, pool: CouponPool, today: dt.date | None = None) -> CodeStatus:
    """free, issued, redeemed or expired."""
    if code.redeemed_at is not None:
        return CodeStatus.REDEEMED
    if pool.expires_on < (today or dt.date.today()):
        return CodeStatus.EXPIRED
    return CodeStatus.ISSUED if code.assigned_at is not None else CodeStatus.FREE


def find_code(session: Session, raw: str) -> tuple[CouponCode, CouponPool]:
    """Look a code up regardless of case and surrounding spaces; raises RedeemError (404)."""
    text = (raw or "").strip()
    if not text or len(text) > 64:
        raise RedeemError("give the code to look up", 400)
    row = session.execute(select(CouponCode, CouponPool).join(CouponPool, CouponPool.id == CouponCode.pool_id)
                          .where(func.upper(CouponCode.code) == text.upper())).first()
    if row is None:
        raise RedeemError(f"no code {text} is known", 404)
    return row[0], row[1]


def describe(code: CouponCode, pool: CouponPool) -> dict[str, Any]:
    """JSON-ready facts about a code."""
    return {"code": code.code, "status": code_status(code, pool), "pool": pool.name,
            "value": pool.value_description, "expires_on": pool.expires_on.isoformat(),
            "issued": code.assigned_at is not None, "campaign_id": code.campaign_id,
            "redeemed_at": code.redeemed_at.isoformat() if code.redeemed_at else None,
            "reference": code.redeemed_reference or None}


def redeem(session: Session, raw_code: str, *, reference: str = "", by: str = "") -> dict[str, Any]:
    """Mark a code redeemed once; raises RedeemError for unknown (404), used (409) or expired (410) codes."""
    reference = (reference or "").strip()
    if len(reference) > 200:
        raise RedeemError("the reference is limited to 200 characters", 400)
    code, pool = find_code(session, raw_code)
    if pool.expires_on < dt.date.today():
        raise RedeemError(f"code {code.code} expired on {pool.expires_on}", 410, describe(code, pool))
    # One conditional UPDATE: two shop calls for the same code at once cannot both succeed.
    done = session.execute(update(CouponCode).where(CouponCode.id == code.id, CouponCode.redeemed_at.is_(None))
                           .values(redeemed_at=utcnow(), redeemed_reference=reference, redeemed_by=by[:200])
                           .execution_options(synchronize_session=False)).rowcount
    session.flush()
    session.refresh(code)
    if not done:
        raise RedeemError(f"code {code.code} was already redeemed", 409, describe(code, pool))
    logger.info("coupon %s redeemed (%s)", code.id, by)
    described = describe(code, pool)
    webhook_events.record(session, webhook_events.EventType.COUPON_REDEEMED,
                          {**described, "contact": {"id": code.contact_id} if code.contact_id else None,
                           "reference": reference, "redeemed_by": by[:200]})
    return described


# ---------------------------------------------------------------- API tokens

def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, name: str, created_by: str = "") -> str:
    """A new bearer token for the shop system; returned once, only its hash is kept."""
    name = (name or "").strip()[:200]
    if not name:
        raise ValidationError("name the token after the system that uses it, e.g. “shop”", field="token_name")
    token = "rpc_" + secrets.token_urlsafe(32)
    session.add(CouponApiToken(name=name, token_hash=_hash_token(token), created_by=created_by))
    session.flush()
    return token


def list_api_tokens(session: Session) -> list[CouponApiToken]:
    return list(session.scalars(select(CouponApiToken).order_by(CouponApiToken.id)))


def revoke_api_token(session: Session, token_id: int) -> None:
    """Delete a token: the shop's next call with it is refused."""
    row = session.get(CouponApiToken, token_id)
    if row is None:
        raise NotFound("that token does not exist")
    session.delete(row)
    session.flush()


def authenticate(session: Session, presented: str, configured: str = "") -> str | None:
    """The name of the token presented (or "settings" for a configured one), None when it matches nothing.

    Compared in constant time: the hash of the presented token against every stored hash.
    """
    presented = (presented or "").strip()
    if not presented or len(presented) > 200:
        return None
    if configured and hmac.compare_digest(presented.encode(), configured.encode()):
        return "settings"
    digest = _hash_token(presented)
    match = None
    for row in list_api_tokens(session):
        if hmac.compare_digest(digest, row.token_hash):
            match = row
    if match is None:
        return None
    match.last_used_at = utcnow()
    session.flush()
    return match.name
