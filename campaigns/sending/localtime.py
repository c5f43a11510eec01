"""Delivery in each reader's local time: "09:00 wherever they are".

A campaign with a local time (`Campaign.local_time`, "HH:MM") gets, at dispatch, a `not_before` on every send row:
the next such wall-clock time in the contact's zone (`Contact.timezone`; empty, "UTC" or unknown → the campaign's
`local_zone`). The same instant goes into `next_attempt_at`, so the existing machinery does the rest unchanged:
claims take only due rows, the sweeper wakes the campaign when the next zone falls due (from the database alone,
so a restarted worker picks up where it was), and the campaign is not finished while any row still waits.

A time already past in a zone when the campaign is dispatched means tomorrow's (`local_late="next_day"`, the
default) or at once (`"now"`, still the same local day). A time skipped by a DST change (02:30 on the spring-forward
night) is read with the offset before the change (it falls an hour later on the wall clock); a repeated one (the
autumn night) means its first occurrence. With `best_time`, each contact's hour is chosen from their own opens and
clicks instead (campaigns.sending.besttime).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import ColumnElement, case, exists, func, literal, null, or_, select, text, update
from sqlalchemy.orm import Session

from campaigns.composing.contributions import Contributor, register
from campaigns.errors import ValidationError
from campaigns.models import Campaign, Contact, Send, SendStatus, UTCDateTime, utcnow
from campaigns.sending import besttime, variants

UTC = ZoneInfo("UTC")
# The partial index ix_send_local_queued's own condition, as literal SQL so PostgreSQL can use the index in any plan.
LOCAL_QUEUED = text("send.status = 'queued' AND send.not_before IS NOT NULL")
LATE_CHOICES = {"next_day": "the next day", "now": "at once"}
UNSET_ZONES = ("", "UTC", "Etc/UTC")   # Contact.timezone's default: no zone known


@cache
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone of that name, None for an empty or unknown one."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def contact_zone(name: str | None, default: str) -> ZoneInfo:
    """A contact's zone: their own, or the campaign's default when they have none (or one that does not exist)."""
    own = zone(name or "") if (name or "") not in UNSET_ZONES else None
    return own or zone(default) or UTC


def parse_time(text: str) -> dt.time:
    hour, _, minute = text.partition(":")
    return dt.time(int(hour), int(minute))


def wall(day: dt.date, at: dt.time, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of wall-clock time `at` on `day` in tz (a skipped time: the offset before the change)."""
    return dt.datetime.combine(day, at, tzinfo=tz).astimezone(dt.UTC)


def due_at(now: dt.datetime, tz: ZoneInfo, at: dt.time, late: str = "next_day") -> dt.datetime:
    """When a message for a reader in tz goes out, dispatched at `now` for local time `at` (UTC)."""
    today = now.astimezone(tz).date()
    when = wall(today, at, tz)
    if when > now:
        return when
    if late == "now":
        return now
    return wall(today + dt.timedelta(days=1), at, tz)


# ---------------------------------------------------------------- dispatch

def planned(campaign: Campaign) -> bool:
    return bool(campaign.local_time)


def due_expression(session: Session, campaign: Campaign, now: dt.datetime, conds: list) -> ColumnElement:
    """The send row's not_before for an INSERT … SELECT over the contacts matching conds: one CASE over the zone
    names found among them (NULL for a campaign sent all at once)."""
    if not planned(campaign):
        return null()
    at = parse_time(campaign.local_time)
    names = session.scalars(select(Contact.timezone).where(*conds).distinct()).all()
    default = due_at(now, contact_zone("", campaign.local_zone), at, campaign.local_late)
    whens = {name: due_at(now, contact_zone(name, campaign.local_zone), at, campaign.local_late)
             for name in names if name is not None}
    whens = {name: when for name, when in whens.items() if when != default}
    if not whens:
        return literal(default, UTCDateTime())
    return case({name: literal(when, UTCDateTime()) for name, when in whens.items()}, value=Contact.timezone,
                else_=literal(default, UTCDateTime()))


def apply_best_times(session: Session, campaign: Campaign, now: dt.datetime, lo: int, hi: int,
                     prior: besttime.Prior | None) -> int:
    """Move the queued, never-tried send rows of contacts lo < id <= hi to each contact's best hour (best_time
    campaigns); returns how many rows moved. Contacts without history keep their place unless the list has one."""
    if not (planned(campaign) and campaign.best_time and prior is not None):
        return 0
    at = parse_time(campaign.local_time)
    zones = dict(session.execute(
        select(Send.contact_id, Contact.timezone).join(Contact, Contact.id == Send.contact_id)
        .where(Send.campaign_id == campaign.id, Send.contact_id > lo, Send.contact_id <= hi,
               Send.status == SendStatus.QUEUED, Send.attempts == 0, Send.not_before.is_not(None),
               Send.created_at >= now)).all())   # this walk's rows only (a resumed walk keeps earlier ones)
    if not zones:
        return 0
    counts = besttime.contact_histograms(session, lo, hi, now, {c: contact_zone(z, campaign.local_zone)
                                                                for c, z in zones.items()})
    moves: dict[dt.datetime, list[int]] = {}
    for contact_id, name in zones.items():
        tz = contact_zone(name, campaign.local_zone)
        when = besttime.best_instant(now, tz, counts.get(contact_id), prior, at, campaign.best_from, campaign.best_to)
        moves.setdefault(when, []).append(contact_id)
    moved = 0
    for when, ids in moves.items():
        for i in range(0, len(ids), 1000):
            moved += session.execute(
                update(Send).where(Send.campaign_id == campaign.id, Send.contact_id.in_(ids[i:i + 1000]),
                                   Send.status == SendStatus.QUEUED, Send.attempts == 0)
                .values(not_before=when, next_attempt_at=when)
                .execution_options(synchronize_session=False)).rowcount or 0
    return moved


# ---------------------------------------------------------------- what the marketer sees

@dataclass
class ZonePlan:
    """One zone of a local-time campaign's audience: when its readers get the mail."""

    zone: str
    recipients: int
    utc: dt.datetime
    local: dt.datetime
    late: bool          # the local time had passed at `now`: tomorrow's, or at once


def zone_counts(session: Session, conds: list) -> dict[str, int]:
    """The audience (contacts matching conds) by their time zone field, as stored (one GROUP BY)."""
    return {name or "": n for name, n in
            session.execute(select(Contact.timezone, func.count()).where(*conds).group_by(Contact.timezone))}


def plan(campaign: Campaign, counts: Mapping[str, int], now: dt.datetime | None = None) -> list[ZonePlan]:
    """The schedule if the campaign were dispatched now, zone by zone in sending order, for an audience counted by
    zone_counts (contacts without a zone join the campaign's default zone)."""
    if not planned(campaign):
        return []
    now = now or utcnow()
    at = parse_time(campaign.local_time)
    rows: dict[str, int] = {}
    for name, n in counts.items():
        tz = contact_zone(name, campaign.local_zone)
        rows[tz.key] = rows.get(tz.key, 0) + n
    out = []
    for key, n in rows.items():
        tz = zone(key) or UTC
        when = due_at(now, tz, at, campaign.local_late)
        out.append(ZonePlan(key, n, when, when.astimezone(tz), wall(now.astimezone(tz).date(), at, tz) <= now))
    return sorted(out, key=lambda z: (z.utc, z.zone))


def waiting(session: Session, campaign_id: int, now: dt.datetime, limit: int,
            remaining: int) -> tuple[int, dt.datetime | None]:
    """Queued send rows waiting for their local time, and when the next of them falls due (from the index).

    Counted one by one up to limit; beyond, `remaining` (the progress bar's count of rows still to go) less the
    rows whose time has come says how many, never fewer than were seen.
    """
    first = session.scalar(select(func.min(Send.not_before)).where(
        Send.campaign_id == campaign_id, LOCAL_QUEUED, Send.not_before > now))
    if first is None:
        return 0, None
    n = _count(session, limit, Send.campaign_id == campaign_id, LOCAL_QUEUED, Send.not_before > now)
    if n == limit:
        come = _count(session, limit, Send.campaign_id == campaign_id, LOCAL_QUEUED, Send.not_before <= now)
        n = max(n, remaining - come)
    return n, first


def _count(session: Session, limit: int, *conds) -> int:
    rows = select(Send.id).where(*conds).limit(limit).subquery()
    return session.scalar(select(func.count()).select_from(rows)) or 0


def retrying(session: Session, campaign_id: int, now: dt.datetime, limit: int) -> int:
    """A local-time campaign's queued rows whose time has come but that wait for another try (up to limit)."""
    return _count(session, limit, Send.campaign_id == campaign_id, LOCAL_QUEUED, Send.not_before <= now,
                  Send.next_attempt_at > now)


def due_rows(campaign_id: int, now: dt.datetime) -> ColumnElement[bool]:
    """Whether a local-time campaign has a row due now: the sweeper's question, answered from the partial index
    (every queued row of such a campaign has a not_before: see settle)."""
    # The index range of rows whose time has come (few: they are being sent); rows waiting for a later zone lie
    # beyond it and are never read. (A row's next_attempt_at is never before its not_before.)
    return exists().where(Send.campaign_id == campaign_id, LOCAL_QUEUED, Send.not_before <= now,
                          or_(Send.next_attempt_at.is_(None), Send.next_attempt_at <= now))


def settle(session: Session, campaign: Campaign, now: dt.datetime) -> None:
    """On (re)start: a local-time campaign's rows from before local time was chosen go at once, like they would
    have (a not_before of now); a campaign no longer in local time sends its waiting rows at once."""
    if planned(campaign) and not campaign.recipients_listed:
        session.execute(update(Send).where(Send.campaign_id == campaign.id, Send.not_before.is_(None),
                                           Send.status.in_([SendStatus.QUEUED, SendStatus.SENDING,
                                                            SendStatus.HELD, SendStatus.UNKNOWN]))
                        .values(not_before=now).execution_options(synchronize_session=False))
    elif not planned(campaign):
        session.execute(update(Send).where(Send.campaign_id == campaign.id, Send.status == SendStatus.QUEUED,
                                           Send.not_before > now)
                        .values(not_before=None, next_attempt_at=None).execution_options(synchronize_session=False))


# ---------------------------------------------------------------- the campaign form

class LocalTime(Contributor):
    """The form's local-time choices (it adds nothing to messages: the schedule is dispatch's)."""

    name = "localtime"
    order = 90
    attributes = ("local_time", "local_zone", "local_late", "best_time", "best_from", "best_to")

    def choose(self, session: Session, data: Mapping[str, Any], campaign: Campaign | None,
               content: str) -> dict[str, Any]:
        if "local_time" not in data:
            return {}
        chosen = choose(data)
        if chosen["local_time"] and campaign is not None and variants.test_of(session, campaign.id) is not None:
            raise ValidationError("this campaign has an A/B test, which sends its test share at once: remove the "
                                  "test (A/B test page) to deliver in each reader's local time", field="local_time")
        return chosen


def choose(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the local-time fields of a campaign form."""
    text = str(data.get("local_time") or "").strip()
    out: dict[str, Any] = {"local_time": "", "best_time": False}
    zone_name = str(data.get("local_zone") or "UTC").strip()
    if zone_name not in UNSET_ZONES and (zone(zone_name) is None or zone_name not in zone_names()):
        raise ValidationError(f"unknown time zone {zone_name!r}: use a name such as Europe/Berlin",
                              field="local_zone")
    out["local_zone"] = zone_name
    late = str(data.get("local_late") or "next_day")
    if late not in LATE_CHOICES:
        raise ValidationError("when the local time has passed: choose the next day or at once", field="local_late")
    out["local_late"] = late
    try:
        lo, hi = int(str(data.get("best_from") or 8)), int(str(data.get("best_to") or 20))
    except ValueError:
        raise ValidationError("the best-time window is two whole hours, e.g. 8 to 20", field="best_from") from None
    if not 0 <= lo < hi <= 24:
        raise ValidationError("the best-time window runs from an hour 0–23 to a later hour up to 24",
                              field="best_from")
    out["best_from"], out["best_to"] = lo, hi
    if not text:
        if data.get("best_time") not in (None, "", False, "0"):
            raise ValidationError("best time per reader needs a local time: the time for readers without history",
                                  field="local_time")
        return out
    try:
        at = parse_time(text)
    except ValueError:
        raise ValidationError("the local time is a time of day such as 09:00", field="local_time") from None
    out["local_time"] = f"{at:%H:%M}"
    out["best_time"] = bool(data.get("best_time"))
    if out["best_time"] and not lo <= at.hour < hi:
        raise ValidationError(f"the local time {out['local_time']} lies outside the best-time window "
                              f"{lo:02d}:00–{hi:02d}:00 (it is the fallback for readers without history)",
                              field="local_time")
    return out


@cache
def zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


register(LocalTime())
