"""An A/B test's figures per variant: recipients sent, people who opened, clicked, replied or redeemed their
coupon, and the sends opened only by machines (privacy proxies, scanners: shown, never counted)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from sqlalchemy import and_, distinct, exists, func, select
from sqlalchemy.orm import Session, aliased

from campaigns.models import AbCriterion, CouponCode, Event, EventType, Reply, Send, SendStatus, variant_letter


@dataclass
class VariantFigures:
    """One variant's figures (unique recipients each)."""

    variant: int
    sent: int = 0
    human_opens: int = 0
    human_clicks: int = 0
    machine_opens: int = 0      # opened by a machine and never by the person
    coupon_redemptions: int = 0
    replies: int = 0            # people who answered in person (auto-replies never count)

    @property
    def letter(self) -> str:
        return variant_letter(self.variant)

    def count(self, criterion: AbCriterion | str) -> int:
        """What the criterion counts."""
        return {AbCriterion.HUMAN_CLICKS: self.human_clicks, AbCriterion.HUMAN_OPENS: self.human_opens,
                AbCriterion.COUPON_REDEMPTIONS: self.coupon_redemptions,
                AbCriterion.REPLIES: self.replies}[AbCriterion(criterion)]

    def rate(self, criterion: AbCriterion | str) -> float:
        return self.count(criterion) / self.sent if self.sent else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "letter": self.letter}


def per_variant(session: Session, campaign_id: int, variants: int, before: dt.datetime | None = None,
                after: dt.datetime | None = None) -> list[VariantFigures]:
    """Figures of each variant 0..variants-1 over the campaign's sends created before `before` (the test share:
    its rows exist before the decision) or at/after `after` (the rest)."""
    out = [VariantFigures(v) for v in range(variants)]
    sends = [Send.campaign_id == campaign_id, Send.variant.is_not(None)]
    if before is not None:
        sends.append(Send.created_at < before)
    if after is not None:
        sends.append(Send.created_at >= after)
    for variant, n in session.execute(select(Send.variant, func.count()).where(
            *sends, Send.status == SendStatus.SENT).group_by(Send.variant)):
        if 0 <= variant < variants:
            out[variant].sent = n

    def people(type_: EventType, machine: bool, *more) -> dict[int, int]:
        return dict(session.execute(
            select(Send.variant, func.count(distinct(Event.send_id)))
            .join(Send, Send.id == Event.send_id)
            .where(Event.campaign_id == campaign_id, Event.type == type_, Event.machine.is_(machine), *sends, *more)
            .group_by(Send.variant)).all())

    human = aliased(Event)
    never_by_a_person = ~exists().where(human.send_id == Event.send_id, human.type == EventType.OPEN,
                                        human.machine.is_(False))
    human_opens, human_clicks = people(EventType.OPEN, False), people(EventType.CLICK, False)
    machine_only = people(EventType.OPEN, True, never_by_a_person)
    redeemed = dict(session.execute(
        select(Send.variant, func.count()).select_from(CouponCode)
        .join(Send, and_(Send.campaign_id == CouponCode.campaign_id, Send.contact_id == CouponCode.contact_id))
        .where(CouponCode.campaign_id == campaign_id, CouponCode.redeemed_at.is_not(None), *sends)
        .group_by(Send.variant)).all())
    replied = dict(session.execute(
        select(Send.variant, func.count(distinct(Reply.send_id))).join(Send, Send.id == Reply.send_id)
        .where(Reply.campaign_id == campaign_id, Reply.auto.is_(False), *sends).group_by(Send.variant)).all())
    for f in out:
        f.human_opens = human_opens.get(f.variant, 0)
        f.human_clicks = human_clicks.get(f.variant, 0)
        f.machine_opens = machine_only.get(f.variant, 0)
        f.coupon_redemptions = redeemed.get(f.variant, 0)
        f.replies = replied.get(f.variant, 0)
    return out
