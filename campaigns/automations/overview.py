"""What the automation pages show: each automation's occurrences, their messages by outcome (from the send table)
and next run over its contacts' time zones; the runs of one automation; the cadence report."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.automations.triggers import audience_zones, next_run, quiet_since
from campaigns.errors import ValidationError
from campaigns.models import (
    Automation,
    AutomationOccurrence,
    AutomationOrderOccurrence,
    AutomationRun,
    Campaign,
    Contact,
    ContactStatus,
    Send,
    SendStatus,
    utcnow,
)


@dataclass(frozen=True)
class AutomationSummary:
    """One automation in the list: occurrences, what became of their messages (from the send table), next run."""

    automation: Automation
    occurrences: int
    runs: int
    last_sent: dt.date | None
    outcomes: dict[str, int]      # sent, held, queued (incl. being sent), failed, skipped
    next_run: str = ""


def _outcomes(by_status: Mapping[str, int]) -> dict[str, int]:
    return {"sent": by_status.get(SendStatus.SENT, 0), "held": by_status.get(SendStatus.HELD, 0),
            "queued": by_status.get(SendStatus.QUEUED, 0) + by_status.get(SendStatus.SENDING, 0),
            "failed": by_status.get(SendStatus.FAILED, 0), "skipped": by_status.get(SendStatus.SKIPPED, 0)}


def overview(session: Session, now: dt.datetime | None = None) -> list[AutomationSummary]:
    """Every automation with its occurrences, their messages by outcome, its last occurrence date and next run."""
    counts: dict[int, int] = defaultdict(int)
    for table in (AutomationOccurrence, AutomationOrderOccurrence):   # an order automation's are per (step, order)
        for automation_id, n in session.execute(select(table.automation_id, func.count())
                                                .group_by(table.automation_id)):
            counts[automation_id] += n
    runs = {a: (n, last) for a, n, last in session.execute(
        select(AutomationRun.automation_id, func.count(), func.max(AutomationRun.occurrence_date))
        .group_by(AutomationRun.automation_id)).all()}
    by_status: dict[int, dict[str, int]] = defaultdict(dict)
    for automation_id, status, n in session.execute(
            select(AutomationRun.automation_id, Send.status, func.count())
            .join(Send, Send.campaign_id == AutomationRun.campaign_id)
            .group_by(AutomationRun.automation_id, Send.status)):
        by_status[automation_id][status] = n
    return [AutomationSummary(a, counts.get(a.id, 0), runs.get(a.id, (0, None))[0], runs.get(a.id, (0, None))[1],
                              _outcomes(by_status[a.id]),
                              next_run(a, now, audience_zones(session, a)) if a.active else "paused")
            for a in session.scalars(select(Automation).order_by(Automation.name))]


@dataclass(frozen=True)
class RunRow:
    run: AutomationRun
    campaign: Campaign | None
    occurrences: int
    outcomes: dict[str, int]


def runs_of(session: Session, automation_id: int, limit: int = 50) -> list[RunRow]:
    """The automation's runs, newest first, with their campaign, occurrences and messages by outcome."""
    counts = func.count(AutomationOccurrence.id)
    rows = session.execute(
        select(AutomationRun, Campaign, counts)
        .outerjoin(Campaign, Campaign.id == AutomationRun.campaign_id)
        .outerjoin(AutomationOccurrence, AutomationOccurrence.run_id == AutomationRun.id)
        .where(AutomationRun.automation_id == automation_id)
        .group_by(AutomationRun.id, Campaign.id)
        .order_by(AutomationRun.occurrence_date.desc(), AutomationRun.id.desc()).limit(limit)).all()
    by_status: dict[int, dict[str, int]] = defaultdict(dict)
    campaign_ids = [c.id for _r, c, _n in rows if c is not None]
    if campaign_ids:
        for campaign_id, status, n in session.execute(
                select(Send.campaign_id, Send.status, func.count()).where(Send.campaign_id.in_(campaign_ids))
                .group_by(Send.campaign_id, Send.status)):
            by_status[campaign_id][status] = n
    by_order = dict(session.execute(
        select(AutomationOrderOccurrence.run_id, func.count())
        .where(AutomationOrderOccurrence.run_id.in_([r.id for r, _c, _n in rows]))
        .group_by(AutomationOrderOccurrence.run_id)).all()) if rows else {}
    return [RunRow(r, c, n + by_order.get(r.id, 0), _outcomes(by_status[c.id] if c is not None else {}))
            for r, c, n in rows]


@dataclass(frozen=True)
class CadencePage:
    days: int
    total: int | None           # None: not counted here (a big list's count comes from a background summary)
    contacts: list[Contact]
    next_after: int | None


def _quiet(days: int, now: dt.datetime | None) -> list:
    if not 1 <= days <= 3650:
        raise ValidationError("days must be from 1 to 3650", field="days")
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    return [Contact.status == ContactStatus.SUBSCRIBED, *quiet_since(cutoff)]


def quiet_count(session: Session, days: int = 30, now: dt.datetime | None = None) -> int:
    """How many subscribed contacts got no mail in `days` days (a pass over every contact: see not_contacted)."""
    return session.scalar(select(func.count()).select_from(Contact).where(*_quiet(days, now))) or 0


def not_contacted(session: Session, days: int = 30, *, after: int | None = None, limit: int = 50,
                  now: dt.datetime | None = None, count: bool = True) -> CadencePage:
    """Subscribed contacts not mailed in `days` days (never mailed: added longer ago than that), by id; with count,
    how many there are in all (on a big list the admin takes that from a background summary instead)."""
    conds = _quiet(days, now)
    total = quiet_count(session, days, now) if count else None
    stmt = select(Contact).where(*conds).order_by(Contact.id).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(Contact.id > after)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    return CadencePage(days, total, rows[:limit], rows[limit - 1].id if more else None)
