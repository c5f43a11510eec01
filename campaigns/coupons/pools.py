"""Coupon pools: create and list them, count their codes, what templates see of a code (`coupon`), and the
campaign form's choice of a pool. Codes come in through campaigns.coupons.codes, go out at send time through
campaigns.coupons.assignment, are redeemed through campaigns.coupons.redemption, are counted in
campaigns.coupons.reports.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from campaigns.db import parse_id
from campaigns.errors import NotFound, ValidationError
from campaigns.models import Campaign, Contact, CouponCode, CouponPool
from campaigns.orders.tiers import tier_names

SAMPLE = {"code": "SAMPLE-CODE", "expires": "", "expires_on": "", "value": ""}

# ---------------------------------------------------------------- pools

def get_pool(session: Session, pool_id: int) -> CouponPool:
    """Load one pool or raise NotFound."""
    pool = session.get(CouponPool, pool_id)
    if pool is None:
        raise NotFound(f"coupon pool {pool_id} not found")
    return pool


def list_pools(session: Session) -> list[CouponPool]:
    """All pools, newest first."""
    return list(session.scalars(select(CouponPool).order_by(CouponPool.id.desc())))


def _parse_date(raw: Any) -> dt.date:
    if isinstance(raw, dt.date):
        return raw
    text = str(raw or "").strip()
    if not text:
        raise ValidationError("give the codes an expiry date", field="expires_on")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{text!r} is not a date like 2026-12-31", field="expires_on") from None


def save_pool(session: Session, data: Mapping[str, Any], pool: CouponPool | None = None) -> CouponPool:
    """Create or update a pool from form-like data (name, value_description, expires_on)."""
    name = str(data.get("name", "") or "").strip()
    value = str(data.get("value_description", "") or "").strip()
    if not name:
        raise ValidationError("give the pool a name", field="name")
    if len(name) > 200 or len(value) > 200:
        raise ValidationError("name and value description are limited to 200 characters", field="name")
    if not value:
        raise ValidationError("describe what a code is worth, e.g. “15% off your next order”",
                              field="value_description")
    expires = _parse_date(data.get("expires_on"))
    # A pool that has expired since keeps its date on edit; a new or changed date must still be valid.
    if expires < dt.date.today() and (pool is None or expires != pool.expires_on):
        raise ValidationError(f"valid until {expires}: that day has passed, so every code would be expired at "
                              "once; choose today or a later day", field="expires_on")
    clash = session.scalar(select(CouponPool.id).where(func.lower(CouponPool.name) == name.lower()))
    if clash is not None and (pool is None or clash != pool.id):
        raise ValidationError(f"there is already a pool called {name}", field="name")
    if pool is None:
        pool = CouponPool()
        session.add(pool)
    pool.name, pool.value_description, pool.expires_on = name, value, expires
    pool.tiers = _chosen_tiers(session, data)
    session.flush()
    return pool


def _chosen_tiers(session: Session, data: Mapping[str, Any]) -> list[str]:
    """The loyalty tiers the form restricts the pool to ([]: anyone), each an existing tier."""
    raw = data.getlist("tiers") if hasattr(data, "getlist") else data.get("tiers") or []
    wanted = [str(t).strip() for t in raw if str(t).strip()][:50]
    known = tier_names(session)
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise ValidationError(f"there is no loyalty tier called {unknown[0][:50]}", field="tiers")
    return [t for t in known if t in wanted]     # in rank order, each once


def tier_refusal(pool: CouponPool, tier: str) -> str:
    """Why a contact in `tier` may not get a code of the pool, or "" when they may."""
    if not pool.tiers or tier in pool.tiers:
        return ""
    who = f"in tier {tier}" if tier else "in no loyalty tier"
    return f"the coupon pool {pool.name} is only for {', '.join(pool.tiers)} customers; this contact is {who}"


def outside_tiers(session: Session, pool: CouponPool, contact_ids: Iterable[int]) -> set[int]:
    """The contacts a tier-only pool may not give a code to (none for a pool open to anyone)."""
    ids = list(contact_ids)
    if not pool.tiers or not ids:
        return set()
    return set(session.scalars(select(Contact.id).where(Contact.id.in_(ids), Contact.tier.not_in(pool.tiers))))


def pool_counts(session: Session, pool_ids: Iterable[int] | None = None) -> dict[int, dict[str, int]]:
    """Per pool: total, free, issued, redeemed codes."""
    stmt = select(
        CouponCode.pool_id, func.count(),
        func.sum(case((CouponCode.assigned_at.is_(None) & CouponCode.redeemed_at.is_(None), 1), else_=0)),
        func.sum(case((CouponCode.assigned_at.is_not(None), 1), else_=0)),
        func.sum(case((CouponCode.redeemed_at.is_not(None), 1), else_=0)),
    ).group_by(CouponCode.pool_id)
    if pool_ids is not None:
        stmt = stmt.where(CouponCode.pool_id.in_(list(pool_ids)))
    return {pid: {"total": total, "free": int(free or 0), "issued": int(issued or 0), "redeemed": int(red or 0)}
            for pid, total, free, issued, red in session.execute(stmt)}


def usable_pools(session: Session) -> list[tuple[CouponPool, int]]:
    """(pool, free codes) of the pools a single code can come from now: not expired, not empty."""
    pools = [p for p in list_pools(session) if not p.expired]
    counts = pool_counts(session, [p.id for p in pools])
    return [(p, counts[p.id]["free"]) for p in pools if counts.get(p.id, {}).get("free")]


def free_count(session: Session, pool_id: int) -> int:
    """Codes of the pool nobody has yet."""
    return session.scalar(select(func.count()).select_from(CouponCode).where(
        CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_(None), CouponCode.redeemed_at.is_(None))) or 0


# ---------------------------------------------------------------- what templates see

def _expires_text(pool: CouponPool) -> str:
    return f"{pool.expires_on.day} {pool.expires_on:%B %Y}"


def coupon_vars(pool: CouponPool, code: str) -> dict[str, str]:
    """What templates see as `coupon`: code, expires (a readable date), expires_on (ISO) and value."""
    return {"code": code, "expires": _expires_text(pool), "expires_on": pool.expires_on.isoformat(),
            "value": pool.value_description}


def sample_vars(pool: CouponPool | None) -> dict[str, str]:
    """Coupon values for previews and test sends: no real code is used up."""
    return coupon_vars(pool, "SAMPLE-CODE") if pool is not None else dict(SAMPLE)


# ---------------------------------------------------------------- campaign form

_USES_COUPON = re.compile(r"\{\{[^}]*\bcoupon\b")


def chosen_pool(session: Session, data: Mapping[str, Any], campaign: Campaign | None, content: str) -> int | None:
    """The coupon pool a campaign form chose ("" = none; absent = keep); content that shows a coupon needs one."""
    if "coupon_pool_id" in data:
        raw = str(data.get("coupon_pool_id") or "").strip()
        pool_id = None
        if raw:
            if (pool_id := parse_id(raw)) is None or session.get(CouponPool, pool_id) is None:
                raise ValidationError("the chosen coupon pool does not exist (any more)", field="coupon_pool_id")
    else:
        pool_id = campaign.coupon_pool_id if campaign is not None else None
    if pool_id is None and _USES_COUPON.search(content):
        raise ValidationError("the content shows {{ coupon… }} but no coupon pool is chosen: choose the pool its "
                              "codes come from", field="coupon_pool_id")
    return pool_id
