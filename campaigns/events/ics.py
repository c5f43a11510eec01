"""An event's calendar file (RFC 5545), written by the icalendar library: a stable UID per event, DTSTART and DTEND
with the event's TZID (and its VTIMEZONE), the place or link as LOCATION and URL; escaping and line folding are the
library's."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from icalendar import Calendar
from icalendar import Event as VEvent

from campaigns.events.service import local_start
from campaigns.models import CalendarEvent


def calendar(event: CalendarEvent, *, base_url: str, organizer_name: str = "", now: dt.datetime | None = None,
             sequence: int = 0) -> bytes:
    """The .ics bytes of one event."""
    cal = Calendar()
    cal.add("prodid", "-//Rapport//Event invitations//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    start = local_start(event)
    vevent = VEvent()
    host = urlsplit(base_url).hostname or "rapport.invalid"
    vevent.add("uid", f"event-{event.id}@{host}")
    vevent.add("dtstamp", (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
    vevent.add("dtstart", start)
    vevent.add("dtend", start + dt.timedelta(minutes=event.duration_minutes))
    vevent.add("summary", event.title)
    vevent.add("sequence", sequence)
    if event.description:
        vevent.add("description", event.description)
    location = event.place or event.link
    if location:
        vevent.add("location", location)
    if event.link:
        vevent.add("url", event.link)
    cal.add_component(vevent)
    cal.add_missing_timezones()
    return cal.to_ical()
