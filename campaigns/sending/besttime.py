"""Best time per contact: the local hour a reader most likely reads mail, from their own human opens and clicks.

The method (docs/local-time.md has a worked example):

1. Every human open or click of the last HISTORY_DAYS (machine opens and link scanners are not counted) falls into
   one of 168 hour-of-week bins in the reader's own zone (Monday 00–01 is bin 0).
2. The list's prior: the same histogram over the whole list (up to PRIOR_EVENTS most recent events), smoothed with
   one extra count per bin, q_h = (L_h + 1) / (L + 168). A list with no history at all is uniform.
3. A reader's score per bin is the posterior mean of a Dirichlet with the list as prior of weight K:
   p_h = (n_h + K·q_h) / (N + K). K = PRIOR_WEIGHT: the list counts like K of the reader's own events, so a single
   open does not outweigh a list with a clear habit, while a reader with many opens follows their own.
4. The candidates are the hours of the marketer's window [from, to) over the next day, each the next such local
   hour after dispatch; the reader gets the candidate whose hour-of-week scores highest. A tie (a reader and a list
   without history) keeps the campaign's chosen local time, then the earlier hour.

A reader without history therefore gets the list's best hour, and when the list has none either, the chosen local
time. There is no minimum list size: a small list's prior is mostly the smoothing, i.e. nearly uniform.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Contact, Event, EventType

HOURS = 168
HISTORY_DAYS = 365
PRIOR_EVENTS = 200_000
PRIOR_WEIGHT = 20.0
ENGAGEMENT = (EventType.OPEN, EventType.CLICK)


def hour_of_week(moment: dt.datetime, tz: ZoneInfo) -> int:
    local = moment.astimezone(tz)
    return local.weekday() * 24 + local.hour


@dataclass(frozen=True)
class Prior:
    """The list's smoothed hour-of-week distribution q (sums to 1) and how many events it was built from."""

    q: tuple[float, ...]
    events: int

    @classmethod
    def from_counts(cls, counts: Sequence[int]) -> Prior:
        total = sum(counts)
        return cls(tuple((c + 1) / (total + HOURS) for c in counts), total)


def posterior(counts: Sequence[int] | None, prior: Prior, k: float = PRIOR_WEIGHT) -> list[float]:
    """p_h = (n_h + k·q_h) / (N + k): the reader's smoothed hour-of-week distribution."""
    n = list(counts) if counts is not None else [0] * HOURS
    total = sum(n)
    return [(n[h] + k * prior.q[h]) / (total + k) for h in range(HOURS)]


def candidates(now: dt.datetime, tz: ZoneInfo, lo: int, hi: int) -> list[dt.datetime]:
    """The next occurrence (after now) of each local hour lo..hi-1, in UTC, earliest first."""
    local_now = now.astimezone(tz)
    out = []
    for hour in range(lo, hi):
        when = dt.datetime.combine(local_now.date(), dt.time(hour), tzinfo=tz).astimezone(dt.UTC)
        if when <= now:
            when = dt.datetime.combine(local_now.date() + dt.timedelta(days=1), dt.time(hour),
                                       tzinfo=tz).astimezone(dt.UTC)
        out.append(when)
    return sorted(set(out))


def best_instant(now: dt.datetime, tz: ZoneInfo, counts: Sequence[int] | None, prior: Prior, at: dt.time,
                 lo: int, hi: int) -> dt.datetime:
    """When the reader gets the mail: the window's candidate whose hour-of-week scores highest (see above)."""
    scores = posterior(counts, prior)
    options = candidates(now, tz, lo, hi)

    def rank(when: dt.datetime) -> tuple[float, bool, float]:
        local = when.astimezone(tz)
        return (scores[hour_of_week(when, tz)], local.hour == at.hour, -when.timestamp())

    best = max(options, key=rank)
    if at.minute and best.astimezone(tz).hour == at.hour:
        best += dt.timedelta(minutes=at.minute)   # the chosen time itself (09:30), not its hour
    return best


def _events(since: dt.datetime):
    return select(Event.contact_id, Event.occurred_at).where(
        Event.type.in_([t.value for t in ENGAGEMENT]), Event.machine.is_(False), Event.occurred_at >= since,
        Event.contact_id.is_not(None))


def list_prior(session: Session, now: dt.datetime, zone_of) -> Prior:
    """The whole list's hour-of-week histogram of human opens and clicks (each in its reader's zone: zone_of maps
    a Contact.timezone value to a zone), smoothed."""
    counts = [0] * HOURS
    rows = _events(now - dt.timedelta(days=HISTORY_DAYS)).add_columns(Contact.timezone) \
        .join(Contact, Contact.id == Event.contact_id).order_by(Event.occurred_at.desc()).limit(PRIOR_EVENTS)
    for _contact_id, occurred_at, name in session.execute(rows):
        counts[hour_of_week(occurred_at, zone_of(name))] += 1
    return Prior.from_counts(counts)


def contact_histograms(session: Session, lo: int, hi: int, now: dt.datetime,
                       zones: Mapping[int, ZoneInfo]) -> dict[int, list[int]]:
    """Hour-of-week counts of each contact lo < id <= hi that is in zones and has human opens or clicks."""
    out: dict[int, list[int]] = {}
    rows = _events(now - dt.timedelta(days=HISTORY_DAYS)).where(Event.contact_id > lo, Event.contact_id <= hi)
    for contact_id, occurred_at in session.execute(rows):
        tz = zones.get(contact_id)
        if tz is not None:
            out.setdefault(contact_id, [0] * HOURS)[hour_of_week(occurred_at, tz)] += 1
    return out
