"""The marketing-to-nurture policy: who may get a non-transactional mail now, and why not (docs/policy.md).

One rule set, written once as a SQL CASE expression (`hold_reason`), serves the send path (decided for a whole claim
in one statement, under per-contact locks), the release of held sends and the forecast. What the rolling-window caps
count is the policy ledger: one row per non-transactional message that passed (campaigns.models.PolicyLedger).

Atomicity: `decide` runs inside the claim's transaction. On PostgreSQL it first takes a transaction-scoped advisory
lock per contact (sorted, so two workers never deadlock), then counts and writes the ledger; a second worker deciding
for the same contact waits for the first to commit and then sees its ledger row. SQLite transactions are
`BEGIN IMMEDIATE` (campaigns.db), so deciders are serialized by the database's write lock.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select, Subquery

from campaigns import queueing
from campaigns.config import PolicySettings
from campaigns.errors import ValidationError
from campaigns.models import (
    HOLD_REASONS,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactStatus,
    DigestRun,
    Frequency,
    PolicyConfig,
    PolicyLedger,
    Send,
    SendReason,
    SendStatus,
    UTCDateTime,
    utcnow,
)
from campaigns.queueing import Job
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

LOCK_CLASS = 0x706F6C69          # 'poli': the advisory-lock namespace of per-contact policy locks
DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(days=7)
MONTH = dt.timedelta(days=30)    # the preference center's "monthly"
PREFERENCE_GAP = {Frequency.WEEKLY: WEEK, Frequency.MONTHLY: MONTH}

# (field, label, minimum, maximum) of the values the admin edits.
LIMITS = (
    ("window_days", "Ratio window (days)", 1, 365),
    ("ratio_marketing", "Marketing mails", 1, 100),
    ("ratio_nurture", "per nurture mails", 1, 100),
    ("min_nurture_before_marketing", "Nurture mails a new contact needs first", 0, 100),
    ("marketing_per_week", "Marketing mails per 7 days", 0, 100),
    ("messages_per_day", "Mails per 24 hours", 1, 100),
    ("hold_days", "Retry held sends for (days)", 1, 365),
)


# ------------------------------------------------------------------ settings

def load(session: Session, defaults: PolicySettings) -> PolicySettings:
    """The policy in force: the values saved in the admin, else the defaults from the configuration."""
    row = session.get(PolicyConfig, 1)
    if row is None:
        return defaults
    return PolicySettings(**{f.name: getattr(row, f.name) for f in fields(PolicySettings)})


def save(session: Session, data: Mapping[str, Any], *, updated_by: str = "") -> PolicySettings:
    """Validate form-like data and store it as the policy in force; commits. ValidationError names the field."""
    values: dict[str, Any] = {"enabled": str(data.get("enabled", "")) in ("1", "on", "true", "yes")}
    for name, label, low, high in LIMITS:
        raw = str(data.get(name, "") or "").strip()
        try:
            number = int(raw)
        except ValueError:
            raise ValidationError(f"{label}: enter a whole number", field=name) from None
        if not low <= number <= high:
            raise ValidationError(f"{label}: enter a number from {low} to {high}", field=name)
        values[name] = number
    policy = PolicySettings(**values)
    row = session.get(PolicyConfig, 1) or PolicyConfig(id=1)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_by = updated_by[:320]
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    logger.info("policy saved by %s: %s", updated_by or "?", values)
    return policy


def deadline(campaign: Campaign, policy: PolicySettings) -> dt.datetime | None:
    """Until when held sends of the campaign are retried: its valid-until, else hold_days after it started."""
    if campaign.valid_until is not None:
        return campaign.valid_until
    if campaign.started_at is not None:
        return campaign.started_at + dt.timedelta(days=policy.hold_days)
    return None


# ------------------------------------------------------------------ the rule, in SQL

def moments(policy: PolicySettings, now: dt.datetime) -> dict[str, dt.datetime]:
    """The window boundaries as of now: the parameters of a statement built with now=None."""
    window = now - dt.timedelta(days=policy.window_days)
    return {"p_now": now, "p_window": window, "p_week": now - WEEK, "p_day": now - DAY, "p_month": now - MONTH,
            "p_since": min(window, now - MONTH)}


def _points(policy: PolicySettings, now: dt.datetime | None) -> dict[str, Any]:
    """Values when now is given; bind parameters (filled from moments()) for a statement built once."""
    if now is not None:
        return moments(policy, now)
    return {name: bindparam(name, type_=UTCDateTime()) for name in
            ("p_now", "p_window", "p_week", "p_day", "p_month", "p_since")}


def stats_query(policy: PolicySettings, now: dt.datetime | None, contact_ids: Any = None) -> Subquery:
    """Per contact, the ledger counts every rule needs (only contacts with ledger rows appear)."""
    led = PolicyLedger
    at = _points(policy, now)
    window, week, day, month = at["p_window"], at["p_week"], at["p_day"], at["p_month"]
    nurture = led.kind == CampaignKind.NURTURE.value
    marketing = led.kind == CampaignKind.MARKETING.value

    def count(*conds: ColumnElement) -> ColumnElement:
        return func.sum(case((and_(*conds), 1), else_=0))

    q = (select(led.contact_id.label("contact_id"),
                count(nurture, led.sent_at >= window).label("nurture"),
                count(marketing, led.sent_at >= window).label("marketing"),
                count(marketing, led.sent_at >= week).label("marketing_week"),
                count(led.sent_at >= day).label("day"),
                count(led.sent_at >= week).label("week"),
                count(led.sent_at >= month).label("month"))
         .where(led.sent_at >= at["p_since"])
         .group_by(led.contact_id))
    if contact_ids is not None:
        q = q.where(led.contact_id.in_(contact_ids))
    return q.subquery("policy_stats")


def hold_reason(kind: str, policy: PolicySettings, now: dt.datetime | None, stats: Subquery) -> ColumnElement:
    """A CASE over Contact and stats: the first rule that holds this kind of mail back, or NULL to send now.

    Order: the contact's own pause and frequency choice, then the ratio, weekly marketing and daily caps.
    """
    if kind == CampaignKind.TRANSACTIONAL:
        return literal(None, type_=Send.reason.type)

    def n(col: str) -> ColumnElement:
        return func.coalesce(stats.c[col], 0)

    now = _points(policy, now)["p_now"]
    whens: list[tuple[ColumnElement, str]] = [
        (and_(Contact.paused_until.is_not(None), Contact.paused_until > now), SendReason.PAUSED.value),
        (or_(and_(Contact.frequency == Frequency.WEEKLY.value, n("week") >= 1),
             and_(Contact.frequency == Frequency.MONTHLY.value, n("month") >= 1)), SendReason.PREFERENCE.value),
    ]
    if policy.enabled:
        if kind == CampaignKind.MARKETING:
            whens.append((or_(n("nurture") < policy.min_nurture_before_marketing,
                              (n("marketing") + 1) * policy.ratio_nurture > n("nurture") * policy.ratio_marketing),
                          SendReason.RATIO.value))
            whens.append((n("marketing_week") >= policy.marketing_per_week, SendReason.WEEKLY_MARKETING.value))
        whens.append((n("day") >= policy.messages_per_day, SendReason.DAILY_TOTAL.value))
    return case(*whens, else_=None)


# ------------------------------------------------------------------ the send path

def _lock(session: Session, contact_ids: list[int]) -> None:
    """Per-contact locks until commit (PostgreSQL); ids sorted, so concurrent deciders cannot deadlock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:cls, CAST(x % 2147483647 AS integer)) "
                             "FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS t(x, i) ORDER BY i"),
                        {"cls": LOCK_CLASS, "ids": contact_ids})
    # SQLite: the transaction began with BEGIN IMMEDIATE and already holds the database's write lock.


def decide(session: Session, kind: str, policy: PolicySettings, send_of: Mapping[int, int],
           contacts: Mapping[int, Contact], now: dt.datetime) -> dict[int, str]:
    """Decide for a claim (contact id -> send id of contacts otherwise eligible): returns the held ones' reasons.

    Every contact that passes gets a ledger row in this transaction; the caller commits before sending.
    """
    if kind == CampaignKind.TRANSACTIONAL or not send_of:
        return {}
    ids = sorted(send_of)
    if policy.enabled:
        _lock(session, ids)
        held = dict(session.execute(_decision(kind, policy), {**moments(policy, now), "ids": ids}).all())
    else:
        # The caps are off; the contact's own choice still counts (from the contact row, no ledger read).
        held = {cid: _own_choice(contacts[cid], now) for cid in ids}
    held = {cid: reason for cid, reason in held.items() if reason}
    passed = [send_of[cid] for cid in ids if cid not in held]
    if passed:
        # One INSERT … SELECT from the claimed send rows: a single statement, not a row-by-row executemany.
        session.execute(insert(PolicyLedger).from_select(
            ["send_id", "contact_id", "kind", "sent_at"],
            select(Send.id, Send.contact_id, literal(kind, PolicyLedger.kind.type),
                   literal(now, PolicyLedger.sent_at.type)).where(Send.id.in_(passed))))
    return held


@functools.lru_cache(maxsize=16)
def _decision(kind: str, policy: PolicySettings) -> Select:
    """Each contact's hold reason (or NULL), built once per kind and policy: the send path runs it for every claim."""
    ids = bindparam("ids", expanding=True)
    stats = stats_query(policy, None, ids)
    return (select(Contact.id, hold_reason(kind, policy, None, stats))
            .outerjoin(stats, stats.c.contact_id == Contact.id).where(Contact.id.in_(ids)))


def _own_choice(contact: Contact, now: dt.datetime) -> str | None:
    if contact.paused_until is not None and contact.paused_until > now:
        return SendReason.PAUSED
    gap = PREFERENCE_GAP.get(contact.frequency)
    if gap is not None and contact.last_sent_at is not None and now - contact.last_sent_at < gap:
        return SendReason.PREFERENCE
    return None


def unreserve(session: Session, send_ids: Collection[int]) -> None:
    """Forget the ledger rows of sends that did not go out after all (failed, deferred, paused)."""
    if send_ids:
        session.execute(delete(PolicyLedger).where(PolicyLedger.send_id.in_(list(send_ids))))


def ratio_rule(policy: PolicySettings) -> str:
    """The ratio rule in words (send rows and the campaign page say it alike)."""
    return (f"{policy.ratio_marketing} marketing per {policy.ratio_nurture} nurture in {policy.window_days} days, "
            f"at least {policy.min_nurture_before_marketing} nurture first")


def explain(reason: str, contact: Contact | None, policy: PolicySettings) -> str:
    """The held reason in words, for the send row's last_error."""
    if reason == SendReason.PAUSED and contact is not None and contact.paused_until is not None:
        return f"held: contact paused their mail until {contact.paused_until:%Y-%m-%d}"
    if reason == SendReason.PREFERENCE and contact is not None:
        return f"held: contact chose {contact.frequency} mail"
    if reason == SendReason.RATIO:
        return f"held: needs more nurture mail first ({ratio_rule(policy)})"
    if reason == SendReason.WEEKLY_MARKETING:
        return f"held: already {policy.marketing_per_week} marketing mail(s) in the last 7 days"
    if reason == SendReason.DAILY_TOTAL:
        return f"held: already {policy.messages_per_day} mail(s) in the last 24 hours"
    return f"held: {reason}"


# ------------------------------------------------------------------ held sends: release and expiry

def expire_held(session: Session, campaign_id: int, reason_text: str) -> int:
    """Mark every held send of the campaign skipped/expired and fix its counters; the caller commits."""
    n = session.execute(
        update(Send).where(Send.campaign_id == campaign_id, Send.status == SendStatus.HELD)
        .values(status=SendStatus.SKIPPED, reason=SendReason.EXPIRED.value, last_error=reason_text)
    ).rowcount or 0
    if n:
        session.execute(update(Campaign).where(Campaign.id == campaign_id)
                        .values(held=Campaign.held - n, skipped=Campaign.skipped + n))
        logger.info("campaign_id=%s: %d held sends expired", campaign_id, n)
    return n


def _release_campaign(session: Session, campaign_id: int, kind: str, policy: PolicySettings, now: dt.datetime,
                      contact_range: tuple[int, int] | None) -> list[int]:
    """Re-queue the campaign's held sends whose contact is eligible now (one UPDATE); returns their contact ids."""
    held_contacts = select(Send.contact_id).where(Send.campaign_id == campaign_id, Send.status == SendStatus.HELD)
    if contact_range is not None:
        held_contacts = held_contacts.where(Send.contact_id.between(*contact_range))
    stats = stats_query(policy, now, held_contacts)
    ready = (select(Send.id).join(Contact, Contact.id == Send.contact_id)
             .outerjoin(stats, stats.c.contact_id == Send.contact_id)
             .where(Send.campaign_id == campaign_id, Send.status == SendStatus.HELD,
                    hold_reason(kind, policy, now, stats).is_(None)))
    if contact_range is not None:
        ready = ready.where(Send.contact_id.between(*contact_range))
    if kind == CampaignKind.NURTURE:
        # A weekly/monthly reader's nurture mail held for that choice waits for their digest (services.digest);
        # a digest itself, and whoever switched back to every mail, are released as usual.
        ready = ready.where(or_(Send.reason != SendReason.PREFERENCE.value,
                                Contact.frequency.not_in([Frequency.WEEKLY.value, Frequency.MONTHLY.value]),
                                exists().where(DigestRun.campaign_id == campaign_id)))
    rows = session.execute(
        # status again in the outer WHERE: a concurrent release that got there first is re-checked, not repeated.
        update(Send).where(Send.id.in_(ready.scalar_subquery()), Send.status == SendStatus.HELD)
        .values(status=SendStatus.QUEUED, reason="", last_error="", next_attempt_at=None)
        .returning(Send.contact_id).execution_options(synchronize_session=False)).all()
    if rows:
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(held=Campaign.held - len(rows)))
    return sorted(r[0] for r in rows)


def release_held(rt: Runtime, *, contact_range: tuple[int, int] | None = None, now: dt.datetime | None = None) -> int:
    """Re-queue held sends whose contacts are eligible now, expire those past their campaign's deadline.

    Meant to run periodically (and, for a range of contacts, right after a nurture batch reached them).
    Returns how many sends were re-queued.
    """
    from campaigns.sending.lifecycle import maybe_finish  # sending imports this module

    now = now or utcnow()
    released = 0
    jobs: list[tuple[int, int, int]] = []
    with rt.session_factory() as session:
        policy = load(session, rt.settings.policy)
        has_held = exists().where(Send.campaign_id == Campaign.id, Send.status == SendStatus.HELD)
        candidates = list(session.scalars(select(Campaign).where(
            Campaign.status.in_([CampaignStatus.RUNNING, CampaignStatus.PAUSED]), has_held)))
        session.commit()
        for campaign in candidates:
            end = deadline(campaign, policy)
            if end is not None and end <= now:
                if contact_range is None:
                    expire_held(session, campaign.id, f"expired: the campaign was valid until {end:%Y-%m-%d %H:%M} UTC")
                    session.commit()
                    maybe_finish(session, campaign.id)
                continue
            if campaign.status != CampaignStatus.RUNNING:
                continue
            ids = _release_campaign(session, campaign.id, campaign.kind, policy, now, contact_range)
            session.commit()
            released += len(ids)
            size = rt.settings.batch_size
            jobs += [(campaign.id, ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]
        if contact_range is None:
            prune(session, policy, now)
    for campaign_id, lo, hi in jobs:
        queueing.enqueue(rt.queue, Job.SEND_BATCH, campaign_id, lo, hi)
    if released:
        logger.info("released %d held sends in %d batch jobs", released, len(jobs))
    return released


def prune(session: Session, policy: PolicySettings, now: dt.datetime) -> int:
    """Delete ledger rows no window looks at any more; commits."""
    keep = max(dt.timedelta(days=policy.window_days), MONTH, WEEK)
    n = session.execute(delete(PolicyLedger).where(PolicyLedger.sent_at < now - keep - DAY)).rowcount or 0
    session.commit()
    return n


# ------------------------------------------------------------------ forecast

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
    from campaigns.sending.lifecycle import audience_conditions  # sending imports this module

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
        lines.append(f"{policy.messages_per_day - len(day)} more nurture or marketing mail(s) allowed in the "
                     "next 24 hours.")
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
