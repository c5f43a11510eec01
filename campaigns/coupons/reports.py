"""Coupon figures: per campaign (issued, delivered, redeemed, expired, redemption rate) and per pool."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from campaigns.coupons.pools import get_pool
from campaigns.models import Campaign, CouponCode, CouponPool, Send, SendStatus


def campaign_stats(session: Session, campaign_id: int) -> dict[str, Any] | None:
    """Coupons of one campaign: issued, delivered, redeemed, expired, redemption rate; None without coupons."""
    today = dt.date.today()
    row = session.execute(
        select(func.count(), func.sum(case((CouponCode.redeemed_at.is_not(None), 1), else_=0)),
               func.sum(case((and_(CouponCode.redeemed_at.is_(None), CouponPool.expires_on < today), 1), else_=0)),
               func.sum(case((Send.status == SendStatus.SENT, 1), else_=0)))
        .select_from(CouponCode).join(CouponPool, CouponPool.id == CouponCode.pool_id)
        .outerjoin(Send, and_(Send.campaign_id == CouponCode.campaign_id, Send.contact_id == CouponCode.contact_id))
        .where(CouponCode.campaign_id == campaign_id, CouponCode.contact_id.is_not(None))).one()
    issued, redeemed, expired, delivered = row[0] or 0, int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)
    campaign = session.get(Campaign, campaign_id)
    if not issued and (campaign is None or not campaign.coupon_pool_id):
        return None
    return {"campaign_id": campaign_id, "name": campaign.name if campaign else "", "issued": issued,
            "delivered": delivered, "redeemed": redeemed, "expired": expired,
            "redemption_rate": round(redeemed / issued, 4) if issued else 0.0}


def pool_report(session: Session, pool_id: int) -> list[dict[str, Any]]:
    """Per campaign that drew from the pool (and "outside campaigns"): issued, redeemed, expired, rate."""
    pool = get_pool(session, pool_id)
    expired_now = pool.expires_on < dt.date.today()
    rows = session.execute(
        select(CouponCode.campaign_id, Campaign.name, func.count(),
               func.sum(case((CouponCode.redeemed_at.is_not(None), 1), else_=0)))
        .outerjoin(Campaign, Campaign.id == CouponCode.campaign_id)
        .where(CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_not(None))
        .group_by(CouponCode.campaign_id, Campaign.name).order_by(CouponCode.campaign_id)).all()
    out = []
    for campaign_id, name, issued, redeemed in rows:
        redeemed = int(redeemed or 0)
        out.append({"campaign_id": campaign_id, "name": name or "outside campaigns (single codes)",
                    "issued": issued, "redeemed": redeemed, "expired": issued - redeemed if expired_now else 0,
                    "redemption_rate": round(redeemed / issued, 4) if issued else 0.0})
    return out


def recent_codes(session: Session, pool_id: int, limit: int = 20) -> list[CouponCode]:
    """The most recently issued or redeemed codes of a pool."""
    return list(session.scalars(select(CouponCode).where(
        CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_not(None))
        .order_by(func.coalesce(CouponCode.redeemed_at, CouponCode.assigned_at).desc()).limit(limit)))
