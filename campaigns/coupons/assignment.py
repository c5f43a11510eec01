"""Coupon codes handed out at send time: one code of the campaign's pool per recipient, before the message renders.

Assignment is set-based and safe with many workers: free codes are claimed with one UPDATE … WHERE id IN (SELECT …
FOR UPDATE SKIP LOCKED) on PostgreSQL (SQLite serializes writers with BEGIN IMMEDIATE), and (campaign, contact) is
unique, so a retried message finds the code it already has and two people never share one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.coupons.pools import coupon_vars, free_count, get_pool, outside_tiers, tier_refusal
from campaigns.errors import InvalidState, NotFound, RapportError, ValidationError
from campaigns.models import Campaign, Contact, CouponCode, CouponPool, utcnow
from mailer.compose import TemplateError


class OutOfCodes(RapportError):
    """The pool has no free code left for a code given outside a campaign."""


def issue_code(session: Session, pool_id: int, contact_id: int, note: str) -> dict[str, str]:
    """Give one contact a code outside a campaign (the REST API, an apology); returns the template's coupon vars.

    Flushes; the caller commits."""
    pool = get_pool(session, pool_id)
    if pool.expires_on < dt.date.today():
        raise ValidationError(f"the pool {pool.name} expired on {pool.expires_on}", field="coupon_pool")
    if pool.tiers:
        contact = session.get(Contact, contact_id)
        if contact is None:
            raise NotFound(f"contact {contact_id} not found")
        if refusal := tier_refusal(pool, contact.tier or ""):
            raise InvalidState(refusal)
    for _ in range(5):
        pick = (select(CouponCode.id).where(CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_(None),
                                            CouponCode.redeemed_at.is_(None)).order_by(CouponCode.id).limit(1))
        if session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        row = session.execute(
            update(CouponCode).where(CouponCode.id.in_(pick.scalar_subquery()))
            .values(contact_id=contact_id, assigned_at=utcnow(), note=note[:200])
            .returning(CouponCode.code).execution_options(synchronize_session=False)).first()
        if row is not None:
            session.flush()
            return coupon_vars(pool, row[0])
        if not free_count(session, pool_id):
            break
    raise OutOfCodes(f"the coupon pool {pool.name} has no free codes left")


def _claim_free(session: Session, pool_id: int, campaign_id: int, n: int) -> list[int]:
    """Mark up to n free codes as this campaign's (contact set by the caller in the same transaction)."""
    pick = (select(CouponCode.id).where(CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_(None),
                                        CouponCode.redeemed_at.is_(None))
            .order_by(CouponCode.id).limit(n))
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = session.execute(
        update(CouponCode).where(CouponCode.id.in_(pick.scalar_subquery()))
        .values(campaign_id=campaign_id, assigned_at=utcnow())
        .returning(CouponCode.id).execution_options(synchronize_session=False)).all()
    return sorted(r[0] for r in rows)


def assign_codes(session: Session, pool_id: int, campaign_id: int,
                 recipients: Sequence[tuple[int, int]]) -> tuple[dict[int, str], list[int]]:
    """Give each (send_id, contact_id) one code of the pool, keeping the code a recipient already has.

    Returns ({contact_id: code}, [contact ids left without a code because the pool ran dry]); the caller commits.
    """
    by_contact = {contact_id: send_id for send_id, contact_id in recipients}
    if not by_contact:
        return {}, []
    have = dict(session.execute(select(CouponCode.contact_id, CouponCode.code).where(
        CouponCode.campaign_id == campaign_id, CouponCode.contact_id.in_(list(by_contact)))).all())
    need = [cid for cid in sorted(by_contact) if cid not in have]
    while need:
        ids = _claim_free(session, pool_id, campaign_id, len(need))
        if not ids:
            break   # PostgreSQL can return fewer rows than asked when others claimed at the same time; retry
        pairs = list(zip(ids, need, strict=False))
        session.execute(update(CouponCode), [{"id": code_id, "contact_id": cid, "send_id": by_contact[cid]}
                                             for code_id, cid in pairs])
        codes = dict(session.execute(select(CouponCode.id, CouponCode.code).where(
            CouponCode.id.in_([code_id for code_id, _ in pairs]))).all())
        for code_id, cid in pairs:
            have[cid] = codes[code_id]
        need = need[len(pairs):]
    return have, need


@dataclass
class BatchCoupons:
    """A campaign's pool as its batch jobs see it: assigns codes per claim, before anything is rendered."""

    pool_id: int
    campaign_id: int
    pool_name: str
    expires_on: dt.date
    template_vars: dict[str, str]   # coupon vars without the code
    tiers: list[str] = field(default_factory=list)   # a tier-only pool's tiers
    coupon_of: dict[int, dict[str, str]] = field(default_factory=dict)   # contact id -> coupon, set per claim

    @classmethod
    def for_campaign(cls, session: Session, campaign: Campaign) -> BatchCoupons | None:
        """None when the campaign draws from no pool."""
        if not campaign.coupon_pool_id:
            return None
        pool = session.get(CouponPool, campaign.coupon_pool_id)
        if pool is None:
            return None
        return cls(pool.id, campaign.id, pool.name, pool.expires_on, coupon_vars(pool, ""), list(pool.tiers or []))

    def assign(self, session: Session, recipients: Sequence[tuple[int, int]]) -> tuple[dict[int, dict], str]:
        """({contact_id: coupon vars}, pause reason or ""); recipients left without a code must not be sent."""
        if self.expires_on < dt.date.today():
            return {}, (f"the coupons of pool “{self.pool_name}” expired on {self.expires_on}: "
                        "choose another pool or cancel the campaign")
        if self.tiers:
            pool = session.get(CouponPool, self.pool_id)
            others = outside_tiers(session, pool, [cid for _, cid in recipients]) if pool is not None else set()
            if others:
                recipients = [(sid, cid) for sid, cid in recipients if cid not in others]
                codes, _ = assign_codes(session, self.pool_id, self.campaign_id, recipients)
                return ({cid: dict(self.template_vars, code=code) for cid, code in codes.items()},
                        f"the coupon pool “{self.pool_name}” is only for {', '.join(self.tiers)} customers and "
                        f"{len(others)} recipient{'s' if len(others) != 1 else ''} in this batch "
                        f"{'are' if len(others) != 1 else 'is'} in another tier or none: limit the audience to a "
                        "segment by loyalty tier, then resume")
        codes, missing = assign_codes(session, self.pool_id, self.campaign_id, recipients)
        reason = ""
        if missing:
            reason = (f"the coupon pool “{self.pool_name}” ran out of codes: {len(missing)} recipient"
                      f"{'s' if len(missing) != 1 else ''} in this batch got nothing; add codes, then resume")
        return {cid: dict(self.template_vars, code=code) for cid, code in codes.items()}, reason

    def vars_for(self, coupon_of: Mapping[int, dict], send_id: int, contact_id: int) -> dict[str, str]:
        """The recipient's coupon; a sample for test sends (send id 0), never a real message without a code."""
        if not send_id:
            return dict(self.template_vars, code="SAMPLE-CODE")
        coupon = coupon_of.get(contact_id)
        if coupon is None:
            raise TemplateError("no coupon code was assigned to this recipient")
        return coupon
