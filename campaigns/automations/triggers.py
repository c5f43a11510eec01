"""When automations fire: time zones, yearly dates (29 February), cron schedules, and who is due at a moment.

Everything here is evaluated in each contact's own time zone; campaigns.automations.runs turns the due
contacts into keyed occurrences and run campaigns.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter
from sqlalchemy import and_, exists, extract, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from campaigns.errors import ValidationError
from campaigns.models import (
    Automation,
    AutomationOccurrence,
    AutomationStep,
    AutomationTrigger,
    Campaign,
    Contact,
    Order,
    Send,
    SendStatus,
    TierChange,
    utcnow,
)
from campaigns.sending import lifecycle as sending

DATE_FIELDS = {"birthday": "Birthday", "first_order": "First order (anniversary)", "attribute": "A date attribute"}
WELCOME_GRACE = dt.timedelta(days=2)      # a welcome step still goes out this long after it fell due
TIER_GRACE = dt.timedelta(days=2)         # a "reached a new tier" thank-you still goes out this long after


@cache
def zone(name: str) -> ZoneInfo:
    """The contact's time zone; an unknown or empty name counts as UTC."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_since(cutoff: dt.datetime) -> list[ColumnElement[bool]]:
    """Conditions on Contact: not mailed since cutoff (nor added since, when never mailed).

    Last mailed is the latest sent message in the send table, or last_sent_at when that is later (mail from before
    the contact's sends were recorded here, e.g. an import): a contact the send table shows as mailed is never quiet.
    """
    mailed = exists().where(Send.contact_id == Contact.id, Send.status == SendStatus.SENT, Send.sent_at >= cutoff)
    return [func.coalesce(Contact.last_sent_at, Contact.created_at) < cutoff, ~mailed]


def yearly_date(month: int, day: int, year: int) -> dt.date:
    """That month and day in `year`; 29 February is 28 February in years without one."""
    if month == 2 and day == 29 and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return dt.date(year, month, day)


def month_days(target: dt.date) -> list[tuple[int, int]]:
    """The (month, day) pairs whose yearly date is `target` (28 February also stands for 29 in common years)."""
    pairs = [(target.month, target.day)]
    if target.month == 2 and target.day == 28 and not calendar.isleap(target.year):
        pairs.append((2, 29))
    return pairs


def validate_cron(expr: str, now: dt.datetime | None = None) -> str:
    """A normalized five-field cron expression, or ValidationError saying what is wrong with it."""
    expr = " ".join(str(expr).split())
    if not expr:
        raise ValidationError("enter a schedule such as `0 9 * * MON#1` (09:00 on the first Monday)", field="cron")
    if len(expr) > 120 or len(expr.split(" ")) != 5:
        raise ValidationError("a schedule has five fields: minute hour day-of-month month day-of-week", field="cron")
    start = (now or utcnow()).replace(tzinfo=None)
    try:
        it = croniter(expr, start)
        fires = [it.get_next(dt.datetime) for _ in range(4)]
    except CroniterBadDateError:
        raise ValidationError(f"the schedule `{expr}` never fires (no such date, e.g. 30 February)",
                              field="cron") from None
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise ValidationError(f"the schedule `{expr}` is not valid: {exc}", field="cron") from None
    if fires[0] - start > dt.timedelta(days=4 * 366):
        raise ValidationError(f"the schedule `{expr}` does not fire within four years", field="cron")
    if any(a.date() == b.date() for a, b in zip(fires, fires[1:], strict=False)):
        raise ValidationError(f"the schedule `{expr}` fires more than once a day; an automation sends a contact "
                              "at most one mail a day", field="cron")
    return expr


# ---------------------------------------------------------------- who is due

def _zones(session: Session, conds: list) -> list[str]:
    """The time zones of the contacts matching conds, without reading every contact: jump from one zone name to the
    next on the index of contact.timezone (a loose index scan: one probe per zone in use), and keep those with a
    contact of the audience (an EXISTS that stops at the first)."""
    zones = []
    zone = session.scalar(select(func.min(Contact.timezone)))
    while zone is not None:
        if not conds or session.scalar(select(exists().where(Contact.timezone == zone, *conds))):
            zones.append(zone)
        zone = session.scalar(select(func.min(Contact.timezone)).where(Contact.timezone > zone))
    return zones


def audience_zones(session: Session, automation: Automation) -> list[str]:
    """The time zones of the contacts the automation's (first) template reaches."""
    step = automation.steps[0] if automation.steps else None
    conds = sending.audience_conditions(step.template) if step is not None and step.template is not None else []
    return _zones(session, conds) or ["UTC"]


def _date_field_due(session: Session, automation: Automation, conds: list, target: dt.date,
                    tz: ZoneInfo) -> list[int]:
    """Contacts (of one zone, in conds) whose date field falls on target's month and day, in an earlier year."""
    pairs = month_days(target)
    field = automation.date_field
    if field == "birthday":
        match = or_(*(and_(extract("month", Contact.birthday) == m, extract("day", Contact.birthday) == d)
                      for m, d in pairs))
        return list(session.scalars(select(Contact.id).where(*conds, match, Contact.birthday < target)))
    if field.startswith("attribute:"):
        value = Contact.attributes[field.split(":", 1)[1]].as_string()
        rows = session.execute(select(Contact.id, value).where(
            *conds, func.substr(value, 6, 5).in_([f"{m:02d}-{d:02d}" for m, d in pairs]))).all()
        due = []
        for cid, raw in rows:
            try:
                when = dt.date.fromisoformat(str(raw)[:10])
            except ValueError:
                continue
            if when.year < target.year:
                due.append(cid)
        return due
    # First-order anniversary: the first order's date in the contact's zone (the SQL filter is a day wider).
    first = func.min(Order.ordered_at).label("first")
    near = [target + dt.timedelta(days=k) for k in (-1, 0, 1)]
    wide = or_(*(and_(extract("month", first) == m, extract("day", first) == d)
                 for day in near for m, d in month_days(day)))
    rows = session.execute(select(Order.contact_id, first).join(Contact, Contact.id == Order.contact_id)
                           .where(*conds).group_by(Order.contact_id).having(wide)).all()
    due = []
    for cid, when in rows:
        local = when.astimezone(tz).date() if isinstance(when, dt.datetime) else None
        if local is not None and local.year < target.year and (local.month, local.day) in pairs:
            due.append(cid)
    return due


def due_now(session: Session, automation: Automation, step: AutomationStep, template: Campaign,
            now: dt.datetime) -> dict[dt.date, list[int]]:
    """For one step: occurrence date -> contacts due now (in their time zones), before the occurrence check."""
    base = sending.audience_conditions(template)
    trig = automation.trigger
    due: dict[dt.date, list[int]] = defaultdict(list)
    if trig == AutomationTrigger.WELCOME:
        joined = func.coalesce(Contact.consent_at, Contact.created_at)
        latest = now - dt.timedelta(days=step.delay_days)
        earliest = max(latest - WELCOME_GRACE, automation.activated_at or now)
        rows = session.execute(select(Contact.id, Contact.timezone, joined)
                               .where(*base, joined >= earliest, joined <= latest)).all()
        for cid, tzname, when in rows:
            fell_due = when + dt.timedelta(days=step.delay_days)
            due[fell_due.astimezone(zone(tzname)).date()].append(cid)
        return due
    if trig == AutomationTrigger.TIER:
        return _promoted(session, automation, base, now)
    for tzname in _zones(session, base):
        tz = zone(tzname)
        local = now.astimezone(tz)
        conds = [*base, Contact.timezone == tzname]
        if trig == AutomationTrigger.CRON:
            fired = croniter(automation.cron, local.replace(tzinfo=None) + dt.timedelta(seconds=1)) \
                .get_prev(dt.datetime)
            if fired.date() == local.date():
                due[local.date()].extend(session.scalars(select(Contact.id).where(*conds)))
            continue
        if local.hour * 60 + local.minute < automation.send_minute:
            continue
        today = local.date()
        if trig == AutomationTrigger.DATE:
            target = today + dt.timedelta(days=automation.days_before)
            ids = _date_field_due(session, automation, conds, target, tz)
            if ids:
                due[target].extend(ids)
        elif trig == AutomationTrigger.YEARLY:
            if automation.month and automation.day and yearly_date(automation.month, automation.day,
                                                                   today.year) == today:
                due[today].extend(session.scalars(select(Contact.id).where(*conds)))
        elif trig == AutomationTrigger.CADENCE:
            cutoff = now - dt.timedelta(days=automation.inactive_days)
            recent = exists().where(
                AutomationOccurrence.automation_id == automation.id, AutomationOccurrence.contact_id == Contact.id,
                AutomationOccurrence.occurrence_date > today - dt.timedelta(days=automation.inactive_days))
            due[today].extend(session.scalars(select(Contact.id).where(*conds, *quiet_since(cutoff), ~recent)))
    return due


def _promoted(session: Session, automation: Automation, base: list, now: dt.datetime) -> dict[dt.date, list[int]]:
    """Contacts promoted to a higher loyalty tier since the automation was switched on (within TIER_GRACE), by
    the day of the promotion in their time zone: one thank-you per contact and day, whatever the tier."""
    earliest = max(now - TIER_GRACE, automation.activated_at or now)
    rows = session.execute(select(TierChange.contact_id, Contact.timezone, TierChange.changed_at)
                           .join(Contact, Contact.id == TierChange.contact_id)
                           .where(*base, TierChange.rank_to > TierChange.rank_from,
                                  TierChange.changed_at >= earliest, TierChange.changed_at <= now)).all()
    due: dict[dt.date, list[int]] = defaultdict(list)
    for cid, tzname, when in rows:
        due[when.astimezone(zone(tzname)).date()].append(cid)
    return due


# ---------------------------------------------------------------- in words

def delay(step: AutomationStep) -> dt.timedelta:
    """How long after the order a post-purchase step falls due."""
    return dt.timedelta(days=step.delay_days, hours=step.delay_hours or 0)


def delay_label(step: AutomationStep) -> str:
    """The delay in words: "at once", "after 4 hours", "after 3 days"."""
    hours = step.delay_days * 24 + (step.delay_hours or 0)
    if not hours:
        return "at once"
    if hours % 24:
        return f"after {hours} hour{'s' if hours != 1 else ''}"
    return f"after {hours // 24} day{'s' if hours != 24 else ''}"


def describe_order(automation: Automation) -> str:
    """The trigger and its filters in words."""
    parts = []
    if automation.min_amount is not None and automation.max_amount is not None:
        parts.append(f"from {automation.min_amount} to {automation.max_amount}")
    elif automation.min_amount is not None:
        parts.append(f"of at least {automation.min_amount}")
    elif automation.max_amount is not None:
        parts.append(f"of at most {automation.max_amount}")
    if automation.product_tag:
        parts.append(f"with product tag “{automation.product_tag}”")
    if automation.first_order_only:
        parts.append("first orders only")
    which = f"an order ({', '.join(parts)})" if parts else "any order"
    steps = ", ".join(delay_label(s) for s in automation.steps) or "no steps"
    return f"after {which}: {steps}"


def describe(automation: Automation) -> str:
    """The trigger in words."""
    at = f"{automation.send_minute // 60:02d}:{automation.send_minute % 60:02d}"
    trig = automation.trigger
    if trig == AutomationTrigger.DATE:
        field = automation.date_field
        label = f"date attribute “{field.split(':', 1)[1]}”" if field.startswith("attribute:") else \
            DATE_FIELDS.get(field, field).lower()
        when = "on the day" if not automation.days_before else \
            f"{automation.days_before} day{'s' if automation.days_before != 1 else ''} before"
        return f"{label}, {when}, at {at} the contact's time"
    if trig == AutomationTrigger.YEARLY:
        leap = " (28 February in other years)" if (automation.month, automation.day) == (2, 29) else ""
        return f"every year on {automation.month:02d}-{automation.day:02d}{leap} at {at} the contact's time"
    if trig == AutomationTrigger.CRON:
        return f"schedule `{automation.cron}` in the contact's time zone"
    if trig == AutomationTrigger.CADENCE:
        return f"contacts not mailed in {automation.inactive_days} days, checked daily at {at} the contact's time"
    if trig == AutomationTrigger.ORDER:
        return describe_order(automation)
    if trig == AutomationTrigger.TIER:
        return "a contact reaches a higher loyalty tier (within a minute)"
    days = ", ".join(f"day {s.delay_days}" for s in automation.steps)
    return f"after subscribing: {days}"


def _firings(automation: Automation, tz: ZoneInfo, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """(last, next) moment the automation fires in a time zone, as aware local times; None for welcome series."""
    local = now.astimezone(tz)
    at = dt.time(automation.send_minute // 60, automation.send_minute % 60)
    trig = automation.trigger

    def on(day: dt.date, when: dt.time = at) -> dt.datetime:
        return dt.datetime.combine(day, when, tz)

    if trig in (AutomationTrigger.DATE, AutomationTrigger.CADENCE):     # checked daily at the send time
        today = on(local.date())
        return (today, today + dt.timedelta(days=1)) if local >= today else (today - dt.timedelta(days=1), today)
    if trig == AutomationTrigger.YEARLY and automation.month and automation.day:
        def year(y: int) -> dt.datetime:
            return on(yearly_date(automation.month, automation.day, y))
        this = year(local.year)
        return (this, year(local.year + 1)) if local >= this else (year(local.year - 1), this)
    if trig == AutomationTrigger.CRON:
        naive = local.replace(tzinfo=None)
        it = croniter(automation.cron, naive + dt.timedelta(seconds=1))
        last = it.get_prev(dt.datetime)
        upcoming = croniter(automation.cron, naive).get_next(dt.datetime)
        return last.replace(tzinfo=tz), upcoming.replace(tzinfo=tz)
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def next_run(automation: Automation, now: dt.datetime | None = None, zones: Sequence[str] = ("UTC",)) -> str:
    """When the automation next sends, in words, over the time zones of its contacts.

    An occurrence fires at the local send time in each zone, so it runs for up to a day: while it has gone out in
    some zones and not yet in others this says "running now", with the next zone and the occurrence after it.
    """
    now = now or utcnow()
    if not automation.active:
        return "paused"
    if automation.trigger in (AutomationTrigger.WELCOME, AutomationTrigger.ORDER):
        return "within a minute of each step falling due"
    if automation.trigger == AutomationTrigger.TIER:
        return "within a minute of a promotion"
    names = sorted({zone(z).key for z in zones} or {"UTC"})
    firings = {name: _firings(automation, zone(name), now) for name in names}
    if any(f is None for f in firings.values()):
        return "not set up yet"
    soonest = min(names, key=lambda n: firings[n][1])
    upcoming = firings[soonest][1]
    day = upcoming.date()
    done = [n for n in names if firings[n][0].date() >= day]
    left = [n for n in names if firings[n][1].date() == day]
    where = f" in {soonest}" if len(names) > 1 or soonest != "UTC" else ""
    utc = upcoming.astimezone(dt.UTC)
    daily = f"daily at {upcoming:%H:%M} local time; " if automation.trigger in (AutomationTrigger.DATE,
                                                                                 AutomationTrigger.CADENCE) else ""
    if not done:
        return f"{daily}next on {upcoming:%a %Y-%m-%d} at {upcoming:%H:%M} local time (first{where}: " \
               f"{utc:%a %Y-%m-%d %H:%M} UTC)"
    after = _firings(automation, zone(soonest), upcoming + dt.timedelta(seconds=1))[1]
    return (f"{daily}running now: out in {len(done)} of {_plural(len(names), 'time zone')}, {len(left)} to go "
            f"(next{where} at {upcoming:%H:%M} local time, {utc:%a %Y-%m-%d %H:%M} UTC); "
            f"next on {after:%a %Y-%m-%d} at {after:%H:%M} local time")
