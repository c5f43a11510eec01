"""Contacts: validation, create/update, search and keyset-paginated listing."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from campaigns.addresses import normalize_email
from campaigns.contacts import birthdays, segments
from campaigns.contacts.suppression import suppressed_status
from campaigns.errors import NotFound, ValidationError
from campaigns.models import (
    Campaign,
    Contact,
    ContactInterest,
    ContactStatus,
    Event,
    EventType,
    Frequency,
    Order,
    Segment,
    Subscription,
    Topic,
    utcnow,
)

logger = logging.getLogger(__name__)

EDITABLE_FIELDS = ("first_name", "last_name", "phone", "address_line1", "address_line2", "city", "region",
                   "postal_code", "country", "timezone", "locale")




def get_contact(session: Session, contact_id: int) -> Contact:
    """Load one contact or raise NotFound."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    return contact


def _parse_birthday(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return birthdays.parse(str(value))
    except ValueError:
        raise ValidationError(f"birthday {value!r} is not a date like 1990-04-23 (or --04-23 without the year)",
                              field="birthday") from None


def save_contact(session: Session, data: Mapping[str, Any], contact: Contact | None = None,
                 *, topic_ids: Iterable[int] | None = None, interests: Iterable[str] | None = None,
                 consent_source: str = "admin") -> Contact:
    """Create or update a contact from form-like data; raises ValidationError and changes nothing on bad input."""
    email = normalize_email(str(data.get("email", "")))
    clash = session.scalar(select(Contact.id).where(Contact.email == email))
    if clash is not None and (contact is None or clash != contact.id):
        raise ValidationError(f"{email} is already in the contact list", field="email")
    birthday = _parse_birthday(data.get("birthday"))
    country = str(data.get("country", "") or "").strip().upper()
    if country and (len(country) != 2 or not country.isalpha()):
        raise ValidationError("country must be a two-letter code such as DE or US", field="country")
    _check_lengths(data)
    tz = str(data.get("timezone", "") or "").strip()
    if tz and tz != "UTC" and tz not in _zones():
        raise ValidationError(f"{tz[:64]!r} is not a time zone; use a name such as Europe/Berlin", field="timezone")
    if birthday is not None and birthday > dt.date.today():
        raise ValidationError("the birthday is in the future", field="birthday")
    if contact is None:
        contact = Contact(email=email, status=suppressed_status(session, email) or ContactStatus.SUBSCRIBED,
                          consent_source=consent_source, consent_at=utcnow(), attributes={})
        session.add(contact)
    contact.email = email
    for name in EDITABLE_FIELDS:
        if name in data:
            value = str(data[name] or "").strip()
            setattr(contact, name, value.upper() if name == "country" else value)
    if not contact.timezone:
        contact.timezone = "UTC"
    contact.birthday = birthday
    if "attributes" in data and isinstance(data["attributes"], Mapping):
        contact.attributes = dict(data["attributes"])
    if topic_ids is not None:
        set_subscriptions(session, contact, topic_ids)
    if interests is not None:
        wanted = {i.replace("\x00", "").strip().lower()[:100] for i in interests if i and i.strip("\x00 ")}
        contact.interests = [ContactInterest(interest=i) for i in sorted(wanted)]
    session.flush()
    return contact


_LABELS = {"first_name": "first name", "last_name": "last name", "address_line1": "address",
           "address_line2": "address (line 2)", "postal_code": "postal code", "timezone": "time zone",
           "locale": "language"}


def _check_lengths(data: Mapping[str, Any]) -> None:
    for name in EDITABLE_FIELDS:
        limit = Contact.__table__.c[name].type.length
        value = str(data.get(name, "") or "").strip()
        if "\x00" in value:
            raise ValidationError(f"the {_LABELS.get(name, name)} contains a NUL character", field=name)
        if limit and len(value) > limit:
            raise ValidationError(f"the {_LABELS.get(name, name)} is longer than {limit} characters", field=name)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def set_subscriptions(session: Session, contact: Contact, topic_ids: Iterable[int]) -> None:
    """Subscribe the contact to exactly these topics, keeping rows of the others as unsubscribed (history)."""
    wanted = set(topic_ids)
    existing = {s.topic_id: s for s in contact.subscriptions}
    known = set(session.scalars(select(Topic.id).where(Topic.id.in_(wanted)))) if wanted else set()
    if wanted - known:
        raise ValidationError("unknown topic", field="topics")
    for topic_id, sub in existing.items():
        sub.subscribed = topic_id in wanted
    for topic_id in wanted - existing.keys():
        contact.subscriptions.append(Subscription(topic_id=topic_id, subscribed=True))


@dataclass(frozen=True)
class ContactPage:
    """One page of contacts with the cursors of its neighbours (None: there is no such page)."""

    contacts: list[Contact]
    next_after: int | None
    prev_before: int | None = None


def _prefix(column, prefix: str):
    """column starts with prefix, as an index range (byte/code point order, as SQLite and C collations sort)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return column.startswith(prefix, autoescape=True)
    return and_(column >= prefix, column < prefix[:-1] + chr(last + 1))


SEARCH_CAP = 2000   # more matches than this: walk the id index and filter instead (see list_contacts)


def _search_branches(query: str) -> list:
    """Email prefix, or first/last name prefix (case-insensitive); "anna beck" also matches Anna Becker.

    Each branch is a range on one index (contact.email, lower(first_name), lower(last_name)).
    """
    q = " ".join(query.replace("\x00", "").strip().lower().split())[:200]
    if not q:
        return []
    if "@" in q:
        return [_prefix(Contact.email, q)]
    first, last = func.lower(Contact.first_name), func.lower(Contact.last_name)
    branches = [_prefix(Contact.email, q), _prefix(first, q), _prefix(last, q)]
    words = q.split(" ")
    if len(words) > 1:
        branches.append(and_(_prefix(first, words[0]), _prefix(last, " ".join(words[1:]))))
    return branches


def search_condition(session: Session, query: str):
    """A WHERE clause for a search, or None when the query is empty.

    A search for something rare ("müller-lüdenscheidt") reads at most SEARCH_CAP ids from the indexes and pages
    through those; a search that matches many ("anna") walks the contacts in id order and filters, which finds a
    page quickly precisely because matches are frequent. Either way a page costs about the same at any size.
    """
    branches = _search_branches(query)
    if not branches:
        return None
    ids: set[int] = set()
    for branch in branches:
        ids.update(session.scalars(select(Contact.id).where(branch).limit(SEARCH_CAP + 1)))
        if len(ids) > SEARCH_CAP:
            return or_(*branches)
    return Contact.id.in_(sorted(ids))


def list_contacts(session: Session, *, query: str = "", after: int | None = None, before: int | None = None,
                  limit: int = 50, status: str = "", segment_id: int | None = None,
                  newest_first: bool = False) -> ContactPage:
    """A page of contacts by id (keyset pagination: page 20,000 costs what page 1 costs).

    after: the page following the contact with this id (in display order); before: the page preceding it.
    """
    conds = []
    search = search_condition(session, query)
    if search is not None:
        conds.append(search)
    if status:
        conds.append(Contact.status == status)
    if segment_id is not None:
        segment = session.get(Segment, segment_id)
        if segment is None:
            raise NotFound(f"segment {segment_id} not found")
        conds.append(segments.condition(session, segment.definition))
    backwards = before is not None
    cursor = before if backwards else after
    ascending = newest_first == backwards   # walk the index in display order, or against it for "previous"
    stmt = select(Contact).where(*conds).limit(limit + 1)
    if cursor is not None:
        stmt = stmt.where(Contact.id > cursor if ascending else Contact.id < cursor)
    stmt = stmt.order_by(Contact.id if ascending else Contact.id.desc())
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
        return ContactPage(rows, rows[-1].id if rows else None, rows[0].id if more and rows else None)
    return ContactPage(rows, rows[-1].id if more and rows else None,
                       rows[0].id if cursor is not None and rows else None)


@dataclass(frozen=True)
class OrderTotal:
    """Lifetime value in one currency."""

    currency: str
    total: Decimal
    orders: int


def order_totals(session: Session, contact_id: int) -> list[OrderTotal]:
    """Lifetime value and number of orders, per currency (amounts in different currencies are never added)."""
    rows = session.execute(select(Order.currency, func.sum(Order.amount), func.count(Order.id))
                           .where(Order.contact_id == contact_id).group_by(Order.currency)
                           .order_by(func.count(Order.id).desc())).all()
    return [OrderTotal(cur, Decimal(str(total or 0)).quantize(Decimal("0.01")), n) for cur, total, n in rows]


def all_topics(session: Session) -> list[Topic]:
    """Every topic by name."""
    return list(session.scalars(select(Topic).order_by(Topic.name)))


def subscriptions_by_topic(session: Session, contact: Contact) -> list[tuple[Topic, Subscription | None]]:
    """Every topic with the contact's subscription row (None: never subscribed), by topic name."""
    mine = {s.topic_id: s for s in contact.subscriptions}
    return [(t, mine.get(t.id)) for t in all_topics(session)]


@dataclass(frozen=True)
class TimelineEntry:
    """One event on a contact's timeline, with the campaign's name and a short human description."""

    event: Event
    campaign_name: str
    detail: str


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]
    next_before: int | None   # event id to continue from (older events)


def timeline(session: Session, contact_id: int, *, before: int | None = None, limit: int = 25) -> Timeline:
    """The contact's events, newest first, in keyset pages of (occurred_at, id)."""
    stmt = (select(Event, Campaign.name).outerjoin(Campaign, Campaign.id == Event.campaign_id)
            .where(Event.contact_id == contact_id)
            .order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit + 1))
    if before is not None:
        anchor = session.execute(select(Event.occurred_at, Event.id).where(
            Event.id == before, Event.contact_id == contact_id)).first()
        if anchor is not None:
            stmt = stmt.where(or_(Event.occurred_at < anchor.occurred_at,
                                  and_(Event.occurred_at == anchor.occurred_at, Event.id < anchor.id)))
    rows = session.execute(stmt).all()
    more = len(rows) > limit
    entries = [TimelineEntry(ev, name or "", describe_event(ev)) for ev, name in rows[:limit]]
    return Timeline(entries, entries[-1].event.id if more and entries else None)


def describe_event(event: Event) -> str:
    """What the marketer needs to know about an event, in a few words."""
    data = event.data or {}
    parts: list[str] = []
    if event.machine:
        parts.append(f"by a machine ({data.get('machine', 'proxy or scanner')})")
    if event.type == EventType.CLICK and data.get("url"):
        parts.append(str(data["url"]))
    elif event.type == EventType.BOUNCE:
        parts.append(" ".join(str(data[k]) for k in ("kind", "status", "diagnostic") if data.get(k)))
    elif event.type in (EventType.UNSUBSCRIBE, EventType.RESUBSCRIBE, EventType.SUBSCRIBE):
        parts.append(", ".join(f"{k.replace('_', ' ')}: {_words(v)}" for k, v in data.items()
                               if v not in (None, "", [])))
    elif event.type == EventType.COMPLAINT:
        parts.append(str(data.get("feedback_type", "")))
    elif event.type == EventType.SURVEY_ANSWER:
        parts.append(f"answered {data.get('answer', '')!r} to question {int(data.get('question', 0)) + 1} "
                     f"of survey #{data.get('survey_id', '?')}")
    elif event.type == EventType.PREFERENCES:
        parts.append(_describe_preferences(data))
    elif event.type == EventType.EVENT_REPLY:
        parts.append(f"{data.get('answer', '')} to the event “{data.get('title', '')}”")
    elif event.type in (EventType.REPLY, EventType.AUTO_REPLY):
        parts.append(f"“{data.get('text', '')}”" if data.get("text") else str(data.get("subject", "")))
    elif event.type == EventType.DRAW_ENTRY:
        parts.append(f"entered the prize draw “{data.get('draw', '?')}” via {data.get('source', '?')}")
    elif event.type == EventType.DETAILS:
        parts.append(f"changed {data.get('field', 'details')} via {data.get('source', '?')}")
    elif data.get("source"):
        parts.append(f"via {data['source']}")
    return " · ".join(p for p in parts if p)[:300]


FREQUENCY_WORDS = {Frequency.EVERY: "every mail", Frequency.WEEKLY: "a weekly digest",
                   Frequency.MONTHLY: "a monthly digest"}


def frequency_words(value: str) -> str:
    """A contact's mail frequency as the admin shows it ("a weekly digest")."""
    return FREQUENCY_WORDS.get(str(value), str(value))


def _words(value: Any) -> str:
    """A stored value in words: lists joined, booleans as yes/no."""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _describe_preferences(data: Mapping[str, Any]) -> str:
    """A preference-center change in words: "mail frequency: every mail → a weekly digest · now receives Tips"."""
    parts = []
    if data.get("source"):
        parts.append(f"via {data['source']}")
    frequency = data.get("frequency")
    if isinstance(frequency, list | tuple) and len(frequency) == 2:
        parts.append(f"mail frequency: {frequency_words(frequency[0])} → {frequency_words(frequency[1])}")
    if data.get("topics_on"):
        parts.append("now receives " + _words(data["topics_on"]))
    if data.get("topics_off"):
        parts.append("no longer receives " + _words(data["topics_off"]))
    if data.get("name"):
        parts.append("changed their name")
    if "paused_until" in data:
        until = data["paused_until"]
        parts.append(f"paused until {str(until)[:10]}" if until else "ended their pause")
    return " · ".join(parts)


def count_contacts(session: Session) -> dict[str, int]:
    """Number of contacts per status."""
    return dict(session.execute(select(Contact.status, func.count()).group_by(Contact.status)).all())


def personalization(contact: Contact, interests: Iterable[str] = ()) -> dict[str, Any]:
    """The `contact` variable templates see: profile fields plus custom attributes (fields win on clashes)."""
    data: dict[str, Any] = dict(contact.attributes or {})
    data.update(
        email=contact.email, first_name=contact.first_name, last_name=contact.last_name,
        full_name=contact.full_name, phone=contact.phone, city=contact.city, region=contact.region,
        postal_code=contact.postal_code, country=contact.country, locale=contact.locale,
        birthday=birthdays.text(contact.birthday), **birthdays.fields(contact.birthday), interests=list(interests),
        tier=contact.tier or "",
    )
    return data
