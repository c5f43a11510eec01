"""Held sends as they stand now: the reason that holds each one back at this moment and when it can go.

A send's stored reason is the rule that held it when it was tried; mail sent since (a nurture mail that satisfies the
ratio, say) changes which rule holds it now. The pages recompute the reason from the policy (policy.hold_reason, the
same CASE the send path and release_held use) whenever they show held sends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from campaigns.config import PolicySettings
from campaigns.models import (
    HOLD_REASONS,
    Campaign,
    CampaignKind,
    Contact,
    DigestRun,
    Frequency,
    PolicyLedger,
    Send,
    SendReason,
    SendStatus,
    utcnow,
)
from campaigns.sending import policy as policy_service

READY = "ready"      # no rule holds it any more: it goes out at the next re-check of held sends
_DIGEST_READERS = [Frequency.WEEKLY.value, Frequency.MONTHLY.value]


@dataclass(frozen=True)
class HeldGroup:
    """Held sends of a campaign that one rule holds back now, and when the last of them can go (when known)."""

    reason: str
    count: int
    text: str


def _reason_now(kind: str, policy: PolicySettings, now: dt.datetime, stats: Subquery,
                digest_run: bool) -> ColumnElement:
    """The current hold reason of a held send row (joined with its Contact and stats), READY when none holds."""
    rule = policy_service.hold_reason(kind, policy, now, stats)
    if kind == CampaignKind.NURTURE and not digest_run:
        # Nurture mail held for a weekly/monthly reader's choice waits for their digest (as release_held does).
        rule = case((and_(Send.reason == SendReason.PREFERENCE.value, Contact.frequency.in_(_DIGEST_READERS)),
                     SendReason.PREFERENCE.value), else_=rule)
    return func.coalesce(rule, READY)


def _when(reason: str, policy: PolicySettings, latest: dt.datetime | None, kind: str) -> str:
    """When sends held for reason can go, in words; latest is the newest moment the rule counts for them."""
    if reason == READY:
        return "no rule holds them now: they go out at the next re-check of held sends (automatic, every few minutes)"
    if reason == SendReason.DAILY_TOTAL and latest is not None:
        return f"waiting for the daily limit: can go by {latest + policy_service.DAY:%a %d %b %Y, %H:%M} UTC"
    if reason == SendReason.WEEKLY_MARKETING and latest is not None:
        return (f"waiting for the weekly marketing limit: can go by "
                f"{latest + policy_service.WEEK:%a %d %b %Y, %H:%M} UTC")
    if reason == SendReason.PAUSED and latest is not None:
        return f"the contacts paused their mail: can go by {latest:%a %d %b %Y, %H:%M} UTC"
    if reason == SendReason.RATIO:
        return f"each goes once the contact has had enough nurture mail ({policy_service.ratio_rule(policy)})"
    if reason == SendReason.PREFERENCE:
        return ("the contacts chose weekly or monthly mail: " + ("it goes out in their next digest"
                if kind == CampaignKind.NURTURE else "each goes when their chosen gap has passed"))
    return ""


def campaign_holds(session: Session, campaign: Campaign, policy: PolicySettings, now: dt.datetime | None = None,
                   *, contact_id: int | None = None) -> list[HeldGroup]:
    """The campaign's held sends (or one contact's) grouped by the rule that holds them now (rule order, READY
    first)."""
    now = now or utcnow()
    kind = str(campaign.kind)
    held = [Send.campaign_id == campaign.id, Send.status == SendStatus.HELD]
    if contact_id is not None:
        held.append(Send.contact_id == contact_id)
    stats = policy_service.stats_query(policy, now, select(Send.contact_id).where(*held))
    digest_run = bool(session.scalar(select(exists().where(DigestRun.campaign_id == campaign.id))))
    reason = _reason_now(kind, policy, now, stats, digest_run).label("reason")
    base = (select(Send.contact_id).join(Contact, Contact.id == Send.contact_id)
            .outerjoin(stats, stats.c.contact_id == Send.contact_id).where(*held))
    rows = session.execute(base.with_only_columns(reason, func.count(), func.max(Contact.paused_until))
                           .group_by(reason)).all()
    out = []
    for code, count, paused_until in sorted(rows, key=lambda r: ([READY, *HOLD_REASONS].index(r[0])
                                                                 if r[0] in (READY, *HOLD_REASONS) else 99)):
        latest = paused_until
        if code in (SendReason.DAILY_TOTAL, SendReason.WEEKLY_MARKETING):
            span = policy_service.DAY if code == SendReason.DAILY_TOTAL else policy_service.WEEK
            conds = [PolicyLedger.sent_at >= now - span,
                     PolicyLedger.contact_id.in_(base.where(reason == code).scalar_subquery())]
            if code == SendReason.WEEKLY_MARKETING:
                conds.append(PolicyLedger.kind == CampaignKind.MARKETING.value)
            latest = session.scalar(select(func.max(PolicyLedger.sent_at)).where(*conds))
        out.append(HeldGroup(str(code), count, _when(str(code), policy, latest, kind)))
    return out


def contact_holds(session: Session, contact: Contact, policy: PolicySettings,
                  now: dt.datetime | None = None) -> list[tuple[int, str, str, str]]:
    """One contact's held sends: (campaign id, name, reason now, the reason and when it can go, in words)."""
    now = now or utcnow()
    campaigns = session.scalars(select(Campaign).join(Send, Send.campaign_id == Campaign.id)
                                .where(Send.contact_id == contact.id, Send.status == SendStatus.HELD)
                                .order_by(Campaign.id)).all()
    out = []
    for campaign in campaigns:
        group = next(iter(campaign_holds(session, campaign, policy, now, contact_id=contact.id)), None)
        if group is None:
            continue
        words = policy_service.explain(group.reason, contact, policy) if group.reason != READY else "eligible now"
        out.append((campaign.id, campaign.name, group.reason, f"{words}; {group.text}" if group.text else words))
    return out
