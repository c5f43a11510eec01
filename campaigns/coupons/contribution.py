"""The coupon pool's part in a message (campaigns.composing.contributions): the form's pool choice, a sample code
and the check that both parts show it, one real code per recipient assigned per claim (a pool run dry or expired
holds the rest back and pauses the campaign), and the code found again when a personalised link is clicked.

Registered when this module is imported (campaigns.capabilities).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.composing.contributions import Contributor, Hold, Parts, Recipient, SampleContribution, register
from campaigns.coupons.assignment import BatchCoupons
from campaigns.coupons.pools import chosen_pool, coupon_vars, sample_vars
from campaigns.errors import NotFound
from campaigns.models import Campaign, CouponCode, CouponPool
from mailer.tracking import TokenCodec

if TYPE_CHECKING:
    from campaigns.runtime import Runtime


class Coupons(Contributor):
    """`coupon` in templates: code, expires, expires_on and value of the recipient's code."""

    name = "coupons"
    order = 10
    attributes = ("coupon_pool_id",)

    def choose(self, session: Session, data: Mapping[str, Any], campaign: Campaign | None,
               content: str) -> dict[str, Any]:
        return {"coupon_pool_id": chosen_pool(session, data, campaign, content)}

    def sample(self, session: Session | None, choices: Mapping[str, Any], *, base_url: str,
               tokens: TokenCodec) -> SampleContribution:
        pool_id = choices.get("coupon_pool_id")
        pool = session.get(CouponPool, pool_id) if session is not None and pool_id else None
        coupon = sample_vars(pool)
        if pool is None:
            return SampleContribution({"coupon": coupon})
        name, expired_on = pool.name, pool.expires_on if pool.expired else None

        def check(parts: Parts) -> list[str]:
            out = []
            if expired_on is not None:
                out.append(f"the codes of the coupon pool “{name}” expired on {expired_on}: choose another pool, "
                           "or give this one a later “valid until” on its page")
            for label, body, where in parts:
                missing = [what for what, values in (("code", [coupon["code"]]),
                                                     ("expiry date", [coupon["expires"], coupon["expires_on"]]))
                           if not any(v in body for v in values)]
                if missing:
                    out.append(f"this campaign draws a code per recipient from the coupon pool “{name}”, but its "
                               f"{label} part does not show the recipient's {' or '.join(missing)}: add "
                               "{{ coupon.code }} and “valid until {{ coupon.expires }}” to " + where
                               + " (or choose no pool)")
            return out

        return SampleContribution({"coupon": coupon}, check)

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> BatchCoupons | None:
        return BatchCoupons.for_campaign(session, campaign)

    def hold(self, session: Session, state: BatchCoupons, recipients: Sequence[tuple[int, int]]) -> Hold | None:
        """Codes before rendering: recipients the pool has no code for are held back and the campaign pauses."""
        state.coupon_of, reason = state.assign(session, recipients)
        if not reason:
            return None
        return Hold([sid for sid, cid in recipients if cid not in state.coupon_of], reason)

    def variables(self, state: BatchCoupons, recipient: Recipient) -> dict[str, Any]:
        if recipient.web:
            return {"coupon": {}}     # the web version shows no code
        return {"coupon": state.vars_for(state.coupon_of, recipient.send_id, recipient.contact_id)}

    def recall(self, rt: Runtime, session: Session, campaign: Campaign, send_id: int,
               contact_id: int) -> dict[str, Any]:
        if not campaign.coupon_pool_id or not send_id:
            return {}
        row = session.execute(
            select(CouponCode.code, CouponPool).join(CouponPool, CouponPool.id == CouponCode.pool_id)
            .where(CouponCode.campaign_id == campaign.id, CouponCode.contact_id == contact_id)).first()
        if row is None:
            raise NotFound("no coupon was given with this message")
        return {"coupon": coupon_vars(row[1], row[0])}


register(Coupons())
