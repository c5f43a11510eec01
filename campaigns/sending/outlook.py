"""What the contact policy means for a campaign's audience (the forecast, held and skipped sends by reason) and for
one contact (their recent mail and what the policy allows next, in words)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.config import PolicySettings
from campaigns.models import (
    HOLD_REASONS,
    Campaign,
    CampaignKind,
    Contact,
    ContactStatus,
    PolicyLedger,
    Send,
    SendStatus,
    utcnow,
)
from campaigns.sending.lifecycle import audience_conditions
from campaigns.sending.policy import DAY, MONTH, PREFERENCE_GAP, WEEK, hold_reason, stats_query


@dataclass
class Forecast:
    """How a campaign's audience would fare if it were sent now."""

    audience: int = 0
    send: int = 0
    held: dict[str, int] = field(default_factory=dict)    # reason -> contacts, in rule order

    @property
    def held_total(self) -> int:
        return sum(self.held.values())


def forecast(session: Session, campaign: Campaign, policy: PolicySettings, now: dt.datetime | None = None) -> Forecast:
    """Receive-now and held-by-rule counts for the campaign's current audience: one GROUP BY in SQL."""
    now = now or utcnow()
    stats = stats_query(policy, now)
    reason = hold_reason(campaign.kind, policy, now, stats).label("reason")
    rows = session.execute(
        select(reason, func.count()).select_from(Contact)
        .outerjoin(stats, stats.c.contact_id == Contact.id)
        .where(*audience_conditions(campaign)).group_by(reason)).all()
    counts = {r: c for r, c in rows}
    out = Forecast(audience=sum(counts.values()), send=counts.pop(None, 0))
    out.held = {str(r): counts[r] for r in HOLD_REASONS if counts.get(r)}
    return out


def send_reasons(session: Session, campaign_id: int) -> dict[str, dict[str, int]]:
    """Held and skipped sends of a campaign by reason: {"held": {...}, "skipped": {...}}."""
    rows = session.execute(
        select(Send.status, Send.reason, func.count()).where(
            Send.campaign_id == campaign_id, Send.status.in_([SendStatus.HELD, SendStatus.SKIPPED]))
        .group_by(Send.status, Send.reason)).all()
    out: dict[str, dict[str, int]] = {"held": {}, "skipped": {}}
    for status, reason, count in rows:
        out[str(status)][reason or "other"] = count
    return out


# ------------------------------------------------------------------ contact view

@dataclass
class RecentSend:
    sent_at: dt.datetime
    kind: str
    campaign_id: int
    campaign_name: str


@dataclass
class Outlook:
    """A contact's recent mail by kind within the window and what the policy allows next, in words."""

    window_days: int
    recent: list[RecentSend]
    counts: dict[str, int]
    allows: list[str]
    held: list[tuple[int, str, str, str]]     # campaign id, name, reason, explanation


def _frees_on(times: list[dt.datetime], limit: int, span: dt.timedelta) -> dt.datetime:
    """When a cap of `limit` per `span` frees up again, given the (ascending) times inside the span."""
    return times[len(times) - limit] + span if limit > 0 else times[-1] + span


def _date(moment: dt.datetime) -> str:
    return f"{moment:%a %d %b %Y, %H:%M} UTC"


def outlook(session: Session, contact: Contact, policy: PolicySettings, now: dt.datetime | None = None) -> Outlook:
    """Recent sends (all kinds) in the window and the next allowed marketing / nurture mail for one contact."""
    now = now or utcnow()
    since = now - dt.timedelta(days=policy.window_days)
    recent = [RecentSend(s, str(k), cid, name) for s, k, cid, name in session.execute(
        select(Send.sent_at, Campaign.kind, Campaign.id, Campaign.name).join(Campaign, Campaign.id == Send.campaign_id)
        .where(Send.contact_id == contact.id, Send.status == SendStatus.SENT, Send.sent_at >= since)
        .order_by(Send.sent_at.desc()).limit(200))]
    ledger = list(session.execute(
        select(PolicyLedger.sent_at, PolicyLedger.kind).where(
            PolicyLedger.contact_id == contact.id, PolicyLedger.sent_at >= min(since, now - MONTH))
        .order_by(PolicyLedger.sent_at)))
    in_window = [(t, k) for t, k in ledger if t >= since]
    counts = {k.value: sum(1 for _t, kind in in_window if kind == k) for k in CampaignKind}
    counts[CampaignKind.TRANSACTIONAL.value] = sum(1 for r in recent if r.kind == CampaignKind.TRANSACTIONAL)
    held = [(cid, name, reason, err) for cid, name, reason, err in session.execute(
        select(Campaign.id, Campaign.name, Send.reason, Send.last_error).join(Campaign, Campaign.id == Send.campaign_id)
        .where(Send.contact_id == contact.id, Send.status == SendStatus.HELD).order_by(Campaign.id))]
    return Outlook(policy.window_days, recent, counts, _allows(contact, policy, now, ledger, counts), held)


def _allows(contact: Contact, policy: PolicySettings, now: dt.datetime, ledger: list,
            counts: dict[str, int]) -> list[str]:
    if contact.status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED):
        return [f"No mail at all: the address {contact.status}, so not even transactional mail goes out."]
    if contact.status != ContactStatus.SUBSCRIBED:
        return [f"Only transactional mail: the contact is {contact.status}."]
    lines = []
    if contact.paused_until is not None and contact.paused_until > now:
        lines.append(f"Paused by the contact until {_date(contact.paused_until)}: only transactional mail until then.")
    gap = PREFERENCE_GAP.get(contact.frequency)
    if gap is not None:
        last = ledger[-1][0] if ledger else None
        if last is not None and now - last < gap:
            lines.append(f"Chose {contact.frequency} mail: next mail allowed on {_date(last + gap)}.")
        else:
            lines.append(f"Chose {contact.frequency} mail: one mail allowed now, then none for {gap.days} days.")
    if not policy.enabled:
        lines.append("The ratio and frequency caps are switched off (Settings → Policy).")
        return lines
    day = [t for t, _k in ledger if t >= now - DAY]
    if len(day) >= policy.messages_per_day:
        lines.append(f"Daily limit reached ({len(day)} of {policy.messages_per_day} in 24 hours): next nurture or "
                     f"marketing mail allowed on {_date(_frees_on(day, policy.messages_per_day, DAY))}.")
    else:
        left = policy.messages_per_day - len(day)
        lines.append(f"{left} more nurture or marketing mail{'' if left == 1 else 's'} allowed in the next 24 hours.")
    nurture, marketing = counts[CampaignKind.NURTURE.value], counts[CampaignKind.MARKETING.value]
    need = max(policy.min_nurture_before_marketing - nurture,
               -(-(marketing + 1) * policy.ratio_nurture // policy.ratio_marketing) - nurture, 0)
    week = [t for t, k in ledger if t >= now - WEEK and k == CampaignKind.MARKETING]
    if need:
        lines.append(f"Next marketing mail allowed after {need} more nurture mail{'s' if need > 1 else ''} "
                     f"({marketing} marketing and {nurture} nurture in the last {policy.window_days} days).")
    elif len(week) < policy.marketing_per_week:
        lines.append(f"A marketing mail is allowed by the ratio ({marketing} marketing and {nurture} nurture in the "
                     f"last {policy.window_days} days).")
    if len(week) >= policy.marketing_per_week:
        if policy.marketing_per_week == 0:
            lines.append("Marketing mail is switched off (0 per week).")
        else:
            lines.append(f"Weekly marketing limit reached ({len(week)} of {policy.marketing_per_week}): resets on "
                         f"{_date(_frees_on(week, policy.marketing_per_week, WEEK))}.")
    return lines
