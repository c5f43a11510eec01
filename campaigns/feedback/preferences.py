"""What recipients decide flows back into the contact list: unsubscribes, the preference center and click targets.
Relays' native webhook payloads are read by mailer.relays and applied by .ingest.

Opens and clicks are recorded by campaigns.feedback.engagement; bounces and complaints by .ingest.
Every change of consent is an event with a timestamp (the consent history shown in the preference center).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from campaigns import stops, webhook_events
from campaigns.contacts.records import set_subscriptions
from campaigns.errors import NotFound, ValidationError
from campaigns.models import (
    Campaign,
    CampaignKind,
    Contact,
    ContactStatus,
    Event,
    EventType,
    Frequency,
    Subscription,
    Topic,
    campaign_topic,
    utcnow,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnsubscribeScope:
    """Who a token unsubscribes and which topics its campaign belongs to."""

    contact: Contact
    campaign: Campaign | None
    topics: list[Topic]


def resolve_unsubscribe(session: Session, contact_id: int, campaign_id: int) -> UnsubscribeScope:
    """Load the contact (and campaign) named by an unsubscribe token; NotFound for tests or erased contacts."""
    contact = session.get(Contact, contact_id) if contact_id else None
    if contact is None:
        raise NotFound("no contact")
    campaign = session.get(Campaign, campaign_id) if campaign_id else None
    topics = list(session.scalars(
        select(Topic).join(campaign_topic, campaign_topic.c.topic_id == Topic.id)
        .where(campaign_topic.c.campaign_id == campaign_id))) if campaign else []
    return UnsubscribeScope(contact, campaign, topics)


def unsubscribe(session: Session, scope: UnsubscribeScope, *, everything: bool, source: str) -> bool:
    """Unsubscribe from all mail or from the campaign's topics; idempotent; returns whether anything changed.

    The caller commits before it answers (the page, the one-click POST, the mailto handler): until then the
    unsubscribe is only in the stops set (campaigns.sending.stops), which running sends check.
    """
    contact = scope.contact
    changed = False
    if everything or not scope.topics:
        if contact.status == ContactStatus.SUBSCRIBED or contact.status == ContactStatus.PENDING:
            contact.status = ContactStatus.UNSUBSCRIBED
            changed = True
    else:
        topic_ids = [t.id for t in scope.topics]
        changed = bool(session.execute(
            update(Subscription).where(Subscription.contact_id == contact.id,
                                       Subscription.topic_id.in_(topic_ids), Subscription.subscribed.is_(True))
            .values(subscribed=False, updated_at=utcnow())).rowcount)
        if changed:   # a bulk UPDATE: tell running sends before the commit (see campaigns.stops)
            stops.note(session, [f"t:{contact.id}:{t}" for t in topic_ids])
            # … and the webhook the contact listener cannot see either (leaving everything it sees).
            webhook_events.record(session, webhook_events.EventType.CONTACT_UNSUBSCRIBED, {
                "contact": webhook_events.contact_data(contact), "scope": "topics", "topic_ids": topic_ids,
                "topics": [t.name for t in scope.topics], "source": source})
    if changed:
        session.add(Event(contact_id=contact.id, campaign_id=scope.campaign.id if scope.campaign else None,
                          type=EventType.UNSUBSCRIBE,
                          data={"scope": "all" if everything or not scope.topics else "topics",
                                "topics": [t.name for t in scope.topics], "source": source}))
        logger.info("contact %s unsubscribed (%s, campaign_id=%s)", contact.id, source,
                    scope.campaign.id if scope.campaign else None)
        session.flush()
    return changed


PAUSE_WEEKS = (2, 4, 8, 12)
FREQUENCY_LABELS = {Frequency.EVERY: "Every mail", Frequency.WEEKLY: "A weekly digest at most",
                    Frequency.MONTHLY: "A monthly digest at most"}
FREQUENCY_GAP = {Frequency.WEEKLY: dt.timedelta(days=7), Frequency.MONTHLY: dt.timedelta(days=30)}


def is_paused(contact: Contact, now: dt.datetime | None = None) -> bool:
    """Whether the contact asked for a break from non-transactional mail that has not ended yet."""
    return contact.paused_until is not None and contact.paused_until > (now or utcnow())


def frequency_allows(contact: Contact, now: dt.datetime | None = None) -> bool:
    """Whether the contact's chosen frequency allows another non-transactional message now (by last_sent_at)."""
    gap = FREQUENCY_GAP.get(Frequency(contact.frequency or Frequency.EVERY))
    if gap is None or contact.last_sent_at is None:
        return True
    return (now or utcnow()) - contact.last_sent_at >= gap


def may_receive(contact: Contact, kind: str, now: dt.datetime | None = None) -> bool:
    """The preference-center part of eligibility: pause and frequency (transactional mail ignores both)."""
    if kind == CampaignKind.TRANSACTIONAL:
        return True
    return not is_paused(contact, now) and frequency_allows(contact, now)


def update_preferences(session: Session, contact: Contact, *, topic_ids: Iterable[int], first_name: str,
                       last_name: str, resubscribe: bool = False, frequency: str | None = None,
                       pause_weeks: int | None = None, now: dt.datetime | None = None) -> list[str]:
    """Apply the preference center form and keep a consent event; returns what changed, in words. Flushes; the
    caller commits.

    pause_weeks: None keeps the current pause, 0 ends it, N pauses for N weeks from now.
    """
    now = now or utcnow()
    if frequency is not None and frequency not in set(Frequency):
        raise ValidationError("choose how often you want mail", field="frequency")
    if pause_weeks is not None and pause_weeks not in (0, *PAUSE_WEEKS):
        raise ValidationError("choose a pause of 2, 4, 8 or 12 weeks", field="pause")
    public = {t.id: t.name for t in session.scalars(select(Topic).where(Topic.public.is_(True)))}
    chosen = set(topic_ids) & set(public)
    before = {s.topic_id for s in contact.subscriptions if s.subscribed}
    hidden = {t for t in before if t not in public}
    set_subscriptions(session, contact, chosen | hidden)
    changes: list[str] = []
    data: dict = {"source": "preference center"}
    added, removed = sorted(chosen - before), sorted((before & set(public)) - chosen)
    if added:
        data["topics_on"] = [public[t] for t in added]
        changes.append("You now receive " + ", ".join(public[t] for t in added) + ".")
    if removed:
        data["topics_off"] = [public[t] for t in removed]
        changes.append("You no longer receive " + ", ".join(public[t] for t in removed) + ".")
    first, last = first_name.strip()[:200], last_name.strip()[:200]
    if (first, last) != (contact.first_name, contact.last_name):
        contact.first_name, contact.last_name = first, last
        data["name"] = True
        changes.append("Your name is saved.")
    if frequency is not None and frequency != contact.frequency:
        data["frequency"] = [str(contact.frequency), frequency]
        contact.frequency = Frequency(frequency)
        changes.append(f"How often: {FREQUENCY_LABELS[Frequency(frequency)].lower()}.")
    if pause_weeks == 0 and is_paused(contact, now):
        contact.paused_until = None
        data["paused_until"] = None
        changes.append("Your pause has ended: mail resumes.")
    elif pause_weeks:
        contact.paused_until = now + dt.timedelta(weeks=pause_weeks)
        data["paused_until"] = contact.paused_until.isoformat()
        changes.append(f"No mail until {contact.paused_until:%d %B %Y}.")
    if resubscribe and contact.status == ContactStatus.UNSUBSCRIBED:
        contact.status = ContactStatus.SUBSCRIBED
        contact.consent_source = "preference center"
        contact.consent_at = now
        session.add(Event(contact_id=contact.id, type=EventType.RESUBSCRIBE, occurred_at=now,
                          data={"source": "preference center"}))
        changes.append("You are subscribed again.")
    if len(data) > 1:
        session.add(Event(contact_id=contact.id, type=EventType.PREFERENCES, occurred_at=now, data=data))
    session.flush()
    return changes or ["Nothing changed."]


CONSENT_EVENTS = (EventType.SUBSCRIBE, EventType.UNSUBSCRIBE, EventType.RESUBSCRIBE, EventType.PREFERENCES,
                  EventType.COMPLAINT, EventType.DETAILS)


def consent_history(session: Session, contact_id: int, limit: int = 20) -> list[Event]:
    """The contact's latest consent events, newest first."""
    return list(session.scalars(select(Event).where(Event.contact_id == contact_id,
                                                    Event.type.in_([str(t) for t in CONSENT_EVENTS]))
                                .order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)))


# Link URLs never change once a campaign is sent; drafts may edit them, so entries live only a short while.
_LINK_TTL = 30.0
_links: dict[int, tuple[float, int, str]] = {}


_lookup_engines: dict[str, Engine] = {}


def _lookup_engine(engine: Engine) -> Engine:
    """An autocommit engine without pre-ping for the click lookups: one network round trip per query instead of
    three (ping, query, rollback). SQLite's engine is cheap as it is."""
    if engine.dialect.name == "sqlite":
        return engine
    key = engine.url.render_as_string(hide_password=False)
    lookup = _lookup_engines.get(key)
    if lookup is None:
        lookup = _lookup_engines[key] = create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_recycle=300)
    return lookup


def _read_row(engine: Engine, sql: str, value: int) -> tuple | None:
    """One row by primary key on a raw pooled DB-API connection, outside any transaction: this runs on every
    click, and a plain autocommit cursor costs a fraction of an ORM round trip and takes no write lock."""
    engine = _lookup_engine(engine)
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute(sql.replace("?", "?" if engine.dialect.paramstyle == "qmark" else "%s"), (value,))
        row = cur.fetchone()
        cur.close()
        conn.rollback()
    finally:
        conn.close()
    return tuple(row) if row else None


def click_target(engine: Engine, link_id: int) -> str:
    """The stored URL of link_id; NotFound when there is no such link.

    Runs on every click, so it reads through a cache of the (immutable once sent) link table and touches nothing
    else: the click token is sealed (AES-SIV) over the send and link ids we paired when rendering, so nobody can
    make it name another campaign's link, and the hit writer (services.hits) still drops any click whose link is
    not of its send's campaign before it becomes an event.
    """
    cached = _links.get(link_id)
    if cached is None or cached[0] < time.monotonic():
        row = _read_row(engine, "SELECT campaign_id, url FROM link WHERE id = ?", link_id)
        if row is None:
            raise NotFound("unknown link")
        if len(_links) > 10_000:
            _links.clear()
        cached = _links[link_id] = (time.monotonic() + _LINK_TTL, row[0], row[1])
    return cached[2]
