"""The marketing-to-nurture policy: who may get a non-transactional mail now, and why not (docs/policy.md).

This module owns the policy's settings, its rules and the send path's decision; re-queueing and expiring held sends
is campaigns.sending.release, the forecast and a contact's outlook campaigns.sending.outlook.

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
from dataclasses import fields
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, literal, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select, Subquery

from campaigns.config import PolicySettings
from campaigns.errors import ValidationError
from campaigns.models import (
    Campaign,
    CampaignKind,
    Contact,
    Frequency,
    PolicyConfig,
    PolicyLedger,
    Send,
    SendReason,
    UTCDateTime,
    utcnow,
)

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
    """Validate form-like data and store it as the policy in force (the caller commits); ValidationError names
    the field."""
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
    session.flush()
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


def _mails(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def explain(reason: str, contact: Contact | None, policy: PolicySettings) -> str:
    """The held reason in words, for the send row's last_error."""
    if reason == SendReason.PAUSED and contact is not None and contact.paused_until is not None:
        return f"held: contact paused their mail until {contact.paused_until:%Y-%m-%d}"
    if reason == SendReason.PREFERENCE and contact is not None:
        return f"held: contact chose {contact.frequency} mail"
    if reason == SendReason.RATIO:
        return f"held: needs more nurture mail first ({ratio_rule(policy)})"
    if reason == SendReason.WEEKLY_MARKETING:
        return f"held: already {_mails(policy.marketing_per_week, 'marketing mail')} in the last 7 days"
    if reason == SendReason.DAILY_TOTAL:
        return f"held: already {_mails(policy.messages_per_day, 'mail')} in the last 24 hours"
    return f"held: {reason}"
