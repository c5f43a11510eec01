"""Events: create and edit (validated), the event a campaign's message is about, and how its time reads.

Functions here flush; whoever opened the session commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.errors import NotFound, ValidationError
from campaigns.models import CalendarEvent, Campaign, CampaignKind, EventMailing

MAX_CAPACITY = 1_000_000


def zone_of(name: str) -> ZoneInfo:
    """The event's time zone; raises ValidationError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone “{name}” (use a name such as Europe/Paris)") from None


def local_start(event: CalendarEvent) -> dt.datetime:
    """The start in the event's own zone."""
    return event.starts_at.astimezone(zone_of(event.zone))


def when(event: CalendarEvent) -> str:
    """The start as invitees read it: "Thursday 10 December 2026, 18:30 (Europe/Paris)"."""
    start = local_start(event)
    return f"{start:%A} {start.day} {start:%B %Y, %H:%M} ({event.zone})"


def remaining(event: CalendarEvent) -> int | None:
    """Places left (None: no limit)."""
    return max(event.capacity - event.taken, 0) if event.capacity else None


def parse_form(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an event form, checked: title, start (local date and time in the zone), zone, duration,
    place or link, capacity, description; raises ValidationError naming the field."""
    title = str(data.get("title") or "").strip()
    if not title or len(title) > 200:
        raise ValidationError("title: give a title of at most 200 characters")
    zone_name = str(data.get("zone") or "UTC").strip()
    zone = zone_of(zone_name)
    raw = str(data.get("starts_at") or "").strip()
    try:
        naive = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError("start: give a date and time such as 2026-12-10T18:30") from None
    if naive.tzinfo is not None:
        naive = naive.astimezone(zone).replace(tzinfo=None)
    starts_at = naive.replace(tzinfo=zone).astimezone(dt.UTC)
    try:
        duration = int(str(data.get("duration_minutes") or "60"))
        capacity = int(str(data.get("capacity") or "0"))
    except ValueError:
        raise ValidationError("duration and capacity are whole numbers") from None
    if not 1 <= duration <= 7 * 24 * 60:
        raise ValidationError("duration: between 1 minute and 7 days")
    if not 0 <= capacity <= MAX_CAPACITY:
        raise ValidationError("capacity: 0 (no limit) or a positive number of places")
    place = str(data.get("place") or "").strip()[:300]
    link = str(data.get("link") or "").strip()
    if link and not link.lower().startswith(("https://", "http://")):
        raise ValidationError("link: an http(s) address for an online event")
    if not place and not link:
        raise ValidationError("place: give a place or a link (or both)")
    return {"title": title, "zone": zone_name, "starts_at": starts_at, "duration_minutes": duration,
            "capacity": capacity, "place": place, "link": link[:500],
            "description": str(data.get("description") or "").strip()[:5000]}


def attach(session: Session, event: CalendarEvent, campaign_id: int | None) -> None:
    """Attach the event to a nurture campaign (or detach it with None); raises ValidationError."""
    if campaign_id is None:
        event.campaign_id = None
        return
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise ValidationError("campaign: no such campaign")
    if campaign.kind != CampaignKind.NURTURE:
        raise ValidationError("campaign: an event is attached to a nurture campaign")
    content = f"{campaign.mjml}\n{campaign.text_body or ''}"
    if "event_block" not in content and "event_url" not in content:
        raise ValidationError("campaign: its content has no answer links yet: add {{ event_block() }} (or "
                              "event_url('yes') links) to the campaign first")
    other = session.scalar(select(CalendarEvent.id).where(CalendarEvent.campaign_id == campaign_id,
                                                          CalendarEvent.id != (event.id or 0)))
    if other is not None:
        raise ValidationError("campaign: that campaign already carries another event")
    event.campaign_id = campaign_id


def save(session: Session, event: CalendarEvent | None, data: Mapping[str, Any]) -> CalendarEvent:
    """Create (event None) or update an event from form data; raises ValidationError."""
    fields = parse_form(data)
    if event is not None and fields["capacity"] and fields["capacity"] < event.taken:
        raise ValidationError(f"capacity: {event.taken} people already hold a place; give at least that many")
    raw_campaign = str(data.get("campaign_id") or "").strip()
    if raw_campaign and not raw_campaign.isdigit():
        raise ValidationError("campaign: choose a campaign")
    if event is None:
        event = CalendarEvent(taken=0)
        session.add(event)
    for key, value in fields.items():
        setattr(event, key, value)
    attach(session, event, int(raw_campaign) if raw_campaign else None)
    session.flush()
    return event


def for_campaign(session: Session, campaign_id: int | None) -> CalendarEvent | None:
    """The event a campaign's messages are about: the invitation it is attached to, or a mail it sent itself."""
    if not campaign_id:
        return None
    event = session.scalar(select(CalendarEvent).where(CalendarEvent.campaign_id == campaign_id))
    if event is not None:
        return event
    return session.scalar(select(CalendarEvent).join(EventMailing, EventMailing.event_id == CalendarEvent.id)
                          .where(EventMailing.campaign_id == campaign_id))


def get(session: Session, event_id: int) -> CalendarEvent:
    event = session.get(CalendarEvent, event_id)
    if event is None:
        raise NotFound("no such event")
    return event
