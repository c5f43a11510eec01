"""Reports: per campaign (delivery, human and machine engagement, links, held by rule, unsubscribes, bounces,
complaints, and the same over time for charts) and the dashboard (list growth, weekly engagement)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.abtests import report as ab_report
from campaigns.composing.editor import LINK_STRIDE, get_campaign
from campaigns.coupons.reports import campaign_stats as coupon_stats
from campaigns.models import (
    CampaignKind,
    Contact,
    ContactStatus,
    Event,
    EventType,
    Link,
    Send,
    SendStatus,
    utcnow,
    variant_letter,
)
from campaigns.transactional.tracking import template_totals

MAX_BUCKETS = 200


def _count(session: Session, *conds) -> int:
    return session.scalar(select(func.count(distinct(Event.send_id))).where(*conds)) or 0


def campaign_report(session: Session, campaign_id: int) -> dict:
    """Numbers for one campaign; engagement counts unique recipients and never includes machine opens or clicks.

    Keys: recipients, delivered (accepted by the relay, minus bounces), opens_human, opens_machine,
    open_rate (human opens / delivered), clicks_human (unique recipients), clicks_machine, click_rate,
    replies (people who wrote back; auto-replies excluded),
    links (per link: url, unique human clicks, total human clicks, machine clicks), unsubscribes,
    bounces_hard, bounces_soft, complaints,
    coupons (issued, delivered, redeemed, expired, redemption_rate; None without coupons),
    ab_test (campaigns.abtests.report.summary; None without an A/B test),
    transactional (a transactional template's messages: messages, sent, opened, clicked, bounced; else None).
    """
    campaign = get_campaign(session, campaign_id)
    sent = session.scalar(select(func.count()).select_from(Send).where(
        Send.campaign_id == campaign_id, Send.status == SendStatus.SENT)) or 0
    of = Event.campaign_id == campaign_id

    def contacts_with(type_: EventType, **data_kind: str) -> int:
        if not data_kind:
            return session.scalar(select(func.count(distinct(Event.contact_id))).where(of, Event.type == type_)) or 0
        rows = session.scalars(select(Event.data).where(of, Event.type == type_))
        return sum(1 for d in rows if all((d or {}).get(k) == v for k, v in data_kind.items()))

    bounced_sends = session.scalar(select(func.count(distinct(Event.send_id))).where(
        of, Event.type == EventType.BOUNCE, Event.send_id.is_not(None))) or 0
    delivered = max(sent - bounced_sends, 0)
    opens_human = _count(session, of, Event.type == EventType.OPEN, Event.machine.is_(False))
    opens_any = _count(session, of, Event.type == EventType.OPEN)
    clicks_human = _count(session, of, Event.type == EventType.CLICK, Event.machine.is_(False))
    clicks_machine = session.scalar(select(func.count()).where(
        of, Event.type == EventType.CLICK, Event.machine.is_(True))) or 0
    per_link: dict[int, dict] = {link.id: {"link_id": link.id, "url": link.url, "position": link.position,
                                           "variant": variant_letter(link.position // LINK_STRIDE),   # A/B
                                           "unique_clicks": 0, "clicks": 0, "machine_clicks": 0}
                                 for link in session.scalars(select(Link).where(Link.campaign_id == campaign_id)
                                                             .order_by(Link.position))}
    uniq: dict[int, set[int]] = {}
    for send_id, data, machine in session.execute(select(Event.send_id, Event.data, Event.machine).where(
            of, Event.type == EventType.CLICK)):
        link = per_link.get(int((data or {}).get("link_id", 0)))
        if link is None:
            continue
        if machine:
            link["machine_clicks"] += 1
        else:
            link["clicks"] += 1
            uniq.setdefault(link["link_id"], set()).add(send_id)
    for link_id, sends in uniq.items():
        per_link[link_id]["unique_clicks"] = len(sends)
    return {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "recipients": campaign.recipients,
        "sent": sent,
        "delivered": delivered,
        "opens_human": opens_human,
        # Sends opened only by machines: proxies and scanners, shown apart and never as engagement.
        "opens_machine": opens_any - opens_human,
        "open_rate": round(opens_human / delivered, 4) if delivered else 0.0,
        "clicks_human": clicks_human,
        "clicks_machine": clicks_machine,
        "click_rate": round(clicks_human / delivered, 4) if delivered else 0.0,
        # People who wrote back (auto-replies are their own event type and never count).
        "replies": contacts_with(EventType.REPLY),
        "links": list(per_link.values()),
        "unsubscribes": contacts_with(EventType.UNSUBSCRIBE),
        "bounces_hard": contacts_with(EventType.BOUNCE, kind="hard"),
        "bounces_soft": contacts_with(EventType.BOUNCE, kind="soft"),
        "complaints": contacts_with(EventType.COMPLAINT),
        # The campaign's coupons (issued, delivered, redeemed, expired, rate), from the pool's own report.
        "coupons": coupon_stats(session, campaign.id),
        # The A/B test: per-variant figures of the test share, the decision and its confidence (None without one).
        "ab_test": ab_report.summary(session, campaign.id),
        # A transactional template: its messages (campaigns.transactional.tracking), which have no send rows.
        "transactional": asdict(template_totals(session, campaign.id))
        if campaign.kind == CampaignKind.TRANSACTIONAL else None,
    }


# ---------------------------------------------------------------- time buckets

_FORMATS = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "week": "%Y-%m-%d"}


def _bucket(session: Session, column, unit: str):
    """The UTC hour, day or week (its Monday) of a timestamp column, as text, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", column)
        return func.to_char(func.date_trunc(unit, utc), "YYYY-MM-DD HH24:00" if unit == "hour" else "YYYY-MM-DD")
    if unit == "week":
        return func.date(column, "weekday 0", "-6 days")
    return func.strftime(_FORMATS[unit], column)


def _floor(t: dt.datetime, unit: str) -> dt.datetime:
    t = t.astimezone(dt.UTC)
    if unit == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - dt.timedelta(days=day.weekday()) if unit == "week" else day


def bucket_labels(start: dt.datetime, end: dt.datetime, unit: str) -> list[str]:
    """Every bucket label from start to end inclusive (the most recent MAX_BUCKETS), so charts show gaps as 0."""
    step = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1), "week": dt.timedelta(weeks=1)}[unit]
    t, last = _floor(start, unit), _floor(end, unit)
    if (last - t) / step > MAX_BUCKETS:
        t = last - step * MAX_BUCKETS
    labels = []
    while t <= last:
        labels.append(t.strftime(_FORMATS[unit]))
        t += step
    return labels


def choose_unit(span: dt.timedelta) -> str:
    """Hours for the first three days, days up to four months, weeks beyond."""
    if span <= dt.timedelta(days=3):
        return "hour"
    return "day" if span <= dt.timedelta(days=120) else "week"


def _series(labels: list[str], counts: dict[str, int]) -> list[int]:
    return [counts.get(label, 0) for label in labels]


# ---------------------------------------------------------------- campaign charts

TIMELINE_TYPES = (EventType.OPEN, EventType.CLICK, EventType.UNSUBSCRIBE, EventType.BOUNCE, EventType.COMPLAINT)


def campaign_charts(session: Session, campaign_id: int, now: dt.datetime | None = None,
                    report: dict | None = None) -> dict[str, Any]:
    """Chart data for one campaign: events over time, clicks per link, delivery outcomes, held/skipped by rule.

    report: campaign_report() of the same campaign when the caller already has it.
    """
    campaign = get_campaign(session, campaign_id)
    report = report or campaign_report(session, campaign_id)
    of = Event.campaign_id == campaign_id
    first, last = session.execute(select(func.min(Event.occurred_at), func.max(Event.occurred_at))
                                  .where(of, Event.type.in_(TIMELINE_TYPES))).one()
    start = min(t for t in (campaign.started_at, first) if t is not None) if (campaign.started_at or first) else None
    timeline: dict[str, Any] = {"unit": "hour", "labels": [], "series": {}}
    if start is not None:
        end = max(t for t in (last, campaign.finished_at, start) if t is not None)
        if campaign.finished_at is None:
            end = max(end, min(now or utcnow(), start + dt.timedelta(days=3)))
        unit = choose_unit(end - start)
        labels = bucket_labels(start, end, unit)
        bucket = _bucket(session, Event.occurred_at, unit)
        counts: dict[str, dict[str, int]] = {}
        for label, type_, machine, n in session.execute(
                select(bucket, Event.type, Event.machine, func.count())
                .where(of, Event.type.in_(TIMELINE_TYPES)).group_by(bucket, Event.type, Event.machine)):
            key = f"{type_}_machine" if machine and type_ in (EventType.OPEN, EventType.CLICK) else str(type_)
            counts.setdefault(key, {})[label] = counts.get(key, {}).get(label, 0) + n
        timeline = {"unit": unit, "labels": labels, "series": {
            "opens": _series(labels, counts.get("open", {})),
            "clicks": _series(labels, counts.get("click", {})),
            "opens_machine": _series(labels, counts.get("open_machine", {})),
            "unsubscribes": _series(labels, counts.get("unsubscribe", {})),
            "bounces": _series(labels, counts.get("bounce", {})),
            "complaints": _series(labels, counts.get("complaint", {})),
        }}
    statuses = dict(session.execute(select(Send.status, func.count()).where(Send.campaign_id == campaign_id)
                                    .group_by(Send.status)).all())
    bounced = report["bounces_hard"] + report["bounces_soft"]
    outcomes = {
        "delivered": report["delivered"],
        "bounced": min(bounced, report["sent"]),
        "failed": statuses.get(SendStatus.FAILED, 0),
        "unknown": statuses.get(SendStatus.UNKNOWN, 0),
        "held": statuses.get(SendStatus.HELD, 0),
        "skipped": statuses.get(SendStatus.SKIPPED, 0),
        "waiting": statuses.get(SendStatus.QUEUED, 0) + statuses.get(SendStatus.SENDING, 0),
    }
    return {
        "campaign_id": campaign_id,
        "timeline": timeline,
        "links": [{"url": link["url"], "people": link["unique_clicks"], "clicks": link["clicks"],
                   "machine_clicks": link["machine_clicks"]} for link in report["links"]],
        "outcomes": outcomes,
        "rules": held_by_rule(session, campaign_id),
    }


def held_by_rule(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """Sends held now and sends skipped, per rule (Send.reason; older rows without one count as 'other')."""
    rows: dict[str, dict[str, Any]] = {}
    for reason, status, n in session.execute(
            select(Send.reason, Send.status, func.count())
            .where(Send.campaign_id == campaign_id, Send.status.in_([SendStatus.HELD, SendStatus.SKIPPED]))
            .group_by(Send.reason, Send.status)):
        row = rows.setdefault(reason or "other", {"reason": reason or "other", "held": 0, "skipped": 0})
        row["held" if status == SendStatus.HELD else "skipped"] += n
    return sorted(rows.values(), key=lambda r: (-(r["held"] + r["skipped"]), r["reason"]))


# ---------------------------------------------------------------- dashboard

def dashboard(session: Session, weeks: int = 26, now: dt.datetime | None = None) -> dict[str, Any]:
    """Weekly list growth (total and new contacts, unsubscribes) and engagement (people who opened or clicked)."""
    now = now or utcnow()
    start = _floor(now - dt.timedelta(weeks=weeks - 1), "week")
    labels = bucket_labels(start, now, "week")
    week = _bucket(session, Contact.created_at, "week")
    new = dict(session.execute(select(week, func.count()).where(Contact.created_at >= start).group_by(week)).all())
    before = session.scalar(select(func.count()).select_from(Contact).where(Contact.created_at < start)) or 0
    total, running = [], before
    for label in labels:
        running += new.get(label, 0)
        total.append(running)
    ev_week = _bucket(session, Event.occurred_at, "week")
    people: dict[str, dict[str, int]] = {}
    for label, type_, n in session.execute(
            select(ev_week, Event.type, func.count(distinct(Event.contact_id)))
            .where(Event.occurred_at >= start, Event.machine.is_(False),
                   Event.type.in_([EventType.OPEN, EventType.CLICK, EventType.UNSUBSCRIBE]))
            .group_by(ev_week, Event.type)):
        people.setdefault(str(type_), {})[label] = n
    subscribed = session.scalar(select(func.count()).select_from(Contact)
                                .where(Contact.status == ContactStatus.SUBSCRIBED)) or 0
    return {
        "labels": labels,
        "growth": {"total": total, "new": _series(labels, new),
                   "unsubscribed": _series(labels, people.get("unsubscribe", {}))},
        "engagement": {"opened": _series(labels, people.get("open", {})),
                       "clicked": _series(labels, people.get("click", {}))},
        "subscribed": subscribed,
    }
