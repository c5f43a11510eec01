"""The outbox of outgoing webhooks: record an event on the caller's session, in the transaction of the change.

Any level may call `record(session, EventType.X, data)`; the row is committed (or rolled back) with the change that
caused it, so an event is never posted for a change that did not happen, and never lost when a process dies after
the commit (campaigns.webhooks routes and posts it). Writing costs nothing when no enabled endpoint wants the type:
`wanted` answers from a per-process cache of the subscribed types, refreshed every CACHE_SECONDS and dropped
whenever this process changes an endpoint (`invalidate`), so the tracking and send paths, and a million-row import,
write no rows unless someone subscribed.

Contacts created, changed or unsubscribed through the ORM are recorded by a session listener here (every path: the
admin, the API, sign-ups, orders, preference pages); bulk statements (imports) call `record_many` themselves.
After a commit that wrote events, the session's KICK callable (set by campaigns.runtime) enqueues the routing job,
so delivery starts within moments; the periodic job is the safety net.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from redis import Redis
from sqlalchemy import event, insert, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.models import Contact, ContactStatus, Subscription, WebhookEndpoint, WebhookEvent, utcnow

logger = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
KICK = "rapport.webhooks.kick"        # session.info key: callable that enqueues the routing job after a commit
_WROTE = "rapport.webhooks.wrote"     # session.info key: this transaction wrote events
_CHANGED = "rapport.webhooks.changed"  # session.info key: this transaction changed an endpoint


class EventType(StrEnum):
    """Every event an endpoint can subscribe to (the `type` of the payload)."""

    CONTACT_CREATED = "contact.created"
    CONTACT_UPDATED = "contact.updated"
    CONTACT_UNSUBSCRIBED = "contact.unsubscribed"
    EMAIL_BOUNCED = "email.bounced"
    EMAIL_COMPLAINED = "email.complained"
    EMAIL_OPENED = "email.opened"
    EMAIL_CLICKED = "email.clicked"
    CAMPAIGN_STARTED = "campaign.started"
    CAMPAIGN_FINISHED = "campaign.finished"
    COUPON_REDEEMED = "coupon.redeemed"
    SURVEY_ANSWERED = "survey.answered"
    ORDER_RECORDED = "order.recorded"
    TEST = "webhook.test"             # "send test event": only ever to the endpoint that asked


# Opens and clicks by machines (privacy proxies, link scanners) reach an endpoint only when it asks for them.
MACHINE_TYPES = frozenset({EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED})
SUBSCRIBABLE = tuple(t for t in EventType if t is not EventType.TEST)

# Contact columns whose change is a contact.updated (not engagement figures, send stamps or bookkeeping).
PROFILE_COLUMNS = ("email", "first_name", "last_name", "phone", "address_line1", "address_line2", "city", "region",
                   "postal_code", "country", "birthday", "timezone", "locale", "attributes", "frequency",
                   "paused_until", "owner_id", "consent_source")
_MAILABLE = (ContactStatus.SUBSCRIBED, ContactStatus.PENDING)


# -- which types have subscribers ----------------------------------------------------------------------------------

class _Cache:
    """{event type: whether some endpoint also wants machine opens/clicks} per engine, with its load time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_engine: weakref.WeakKeyDictionary[Engine, tuple[float, dict[str, bool]]] = weakref.WeakKeyDictionary()
        self.generation = 0


_cache = _Cache()


def invalidate() -> None:
    """Forget the subscribed types (an endpoint was added, changed, enabled, disabled or deleted here)."""
    with _cache.lock:
        _cache.by_engine.clear()
        _cache.generation += 1


def subscribed(session: Session) -> dict[str, bool]:
    """The event types some enabled endpoint wants, each with whether one wants machine opens/clicks too."""
    conn = session.connection()
    engine = conn.engine
    now = time.monotonic()
    with _cache.lock:
        hit = _cache.by_engine.get(engine)
        generation = _cache.generation
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    types: dict[str, bool] = {}
    for event_types, machine in conn.execute(select(WebhookEndpoint.event_types, WebhookEndpoint.include_machine)
                                             .where(WebhookEndpoint.enabled)):
        if isinstance(event_types, str):
            event_types = json.loads(event_types)
        for type_ in event_types or ():
            types[type_] = types.get(type_, False) or bool(machine)
    with _cache.lock:
        if _cache.generation == generation:
            _cache.by_engine[engine] = (now, types)
    return types


def wanted(session: Session, type_: EventType, *, machine: bool = False) -> bool:
    """Whether an enabled endpoint wants this event (for opens and clicks: by a machine too, when `machine`)."""
    types = subscribed(session)
    if type_ not in types:
        return False
    return not (machine and type_ in MACHINE_TYPES) or types[type_]


# -- writing events ------------------------------------------------------------------------------------------------

def body(type_: str, data: Mapping[str, Any], at: dt.datetime) -> str:
    """The JSON posted for an event: {"type", "timestamp", "data"} (docs/outgoing-webhooks.md)."""
    return json.dumps({"type": str(type_), "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
                      default=_jsonable, separators=(",", ":"), sort_keys=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)        # Decimal amounts, enums


def record(session: Session, type_: EventType, data: Mapping[str, Any], *, machine: bool = False,
           endpoint_id: int | None = None) -> bool:
    """Write one event into the session's transaction when an endpoint wants it (or to `endpoint_id`: a test)."""
    if endpoint_id is None and not wanted(session, type_, machine=machine):
        return False
    _write(session, [(type_, data, machine)], endpoint_id)
    return True


def record_many(session: Session, type_: EventType, items: Iterable[tuple[Mapping[str, Any], bool]]) -> int:
    """Write many events of one type, (data, machine) each, in one statement; only those some endpoint wants."""
    types = subscribed(session)
    if type_ not in types:
        return 0
    keep_machine = types[type_] or type_ not in MACHINE_TYPES
    rows = [(type_, data, machine) for data, machine in items if keep_machine or not machine]
    _write(session, rows, None)
    return len(rows)


def _write(session: Session, rows: list[tuple[EventType, Mapping[str, Any], bool]], endpoint_id: int | None) -> None:
    if not rows:
        return
    now = utcnow()
    # Through the connection: also safe inside a flush (the contact listener below).
    session.connection().execute(insert(WebhookEvent), [
        {"type": str(type_), "body": body(type_, data, now), "machine": machine, "endpoint_id": endpoint_id,
         "routed": False, "created_at": now} for type_, data, machine in rows])
    session.info[_WROTE] = True


def contact_data(contact: Contact) -> dict[str, Any]:
    """What events about a contact say about it."""
    return {"id": contact.id, "email": contact.email, "first_name": contact.first_name or "",
            "last_name": contact.last_name or "", "status": str(contact.status), "locale": contact.locale or "",
            "country": contact.country or "", "attributes": dict(contact.attributes or {})}


# -- contacts changed through the ORM ------------------------------------------------------------------------------

@event.listens_for(Session, "after_flush")
def _contacts(session: Session, _flush_context) -> None:
    if not any(isinstance(obj, Contact | Subscription) for obj in (*session.new, *session.dirty)):
        return
    types = subscribed(session)
    wants = {t for t in (EventType.CONTACT_CREATED, EventType.CONTACT_UPDATED, EventType.CONTACT_UNSUBSCRIBED)
             if t in types}
    if not wants:
        return
    rows: list[tuple[EventType, Mapping[str, Any], bool]] = []
    for obj in session.new:
        if isinstance(obj, Contact) and EventType.CONTACT_CREATED in wants:
            rows.append((EventType.CONTACT_CREATED, {"contact": contact_data(obj), "source": "rapport"}, False))
    for obj in session.dirty:
        if isinstance(obj, Contact):
            rows += _contact_changes(obj, wants)
        elif isinstance(obj, Subscription) and EventType.CONTACT_UNSUBSCRIBED in wants:
            hist = inspect(obj).attrs.subscribed.history
            if hist.deleted and True in hist.deleted and not obj.subscribed:
                data = {"contact": {"id": obj.contact_id}, "scope": "topics", "topic_ids": [obj.topic_id]}
                rows.append((EventType.CONTACT_UNSUBSCRIBED, data, False))
    if rows:
        _write(session, rows, None)


def _contact_changes(contact: Contact, wants: set[EventType]) -> list[tuple[EventType, Mapping[str, Any], bool]]:
    state = inspect(contact)
    out: list[tuple[EventType, Mapping[str, Any], bool]] = []
    status = state.attrs.status.history
    left = (status.deleted and contact.status == ContactStatus.UNSUBSCRIBED
            and any(old in _MAILABLE for old in status.deleted))
    if left and EventType.CONTACT_UNSUBSCRIBED in wants:
        out.append((EventType.CONTACT_UNSUBSCRIBED, {"contact": contact_data(contact), "scope": "all"}, False))
    if EventType.CONTACT_UPDATED in wants:
        changed = [name for name in PROFILE_COLUMNS if state.attrs[name].history.has_changes()]
        # A change of status is an update too, except the ones with their own event (unsubscribed, bounced…).
        if status.deleted and not left and contact.status in _MAILABLE:
            changed.append("status")
        if changed:
            out.append((EventType.CONTACT_UPDATED, {"contact": contact_data(contact), "changed": sorted(changed)},
                        False))
    return out


# -- waking the router after a commit ------------------------------------------------------------------------------

def kicker(redis: Callable[[], Redis], queue: Callable[[], Any], queue_name: str) -> Callable[[], None]:
    """A callable that enqueues the routing job unless one is already waiting (what a Runtime puts in sessions)."""
    waiting = f"rapport:{queue_name}:webhooks:route-queued"

    def kick() -> None:
        if redis().set(waiting, "1", nx=True, ex=60):
            queueing.enqueue(queue(), queueing.Job.ROUTE_WEBHOOKS)

    return kick


def route_started(redis: Redis, queue_name: str) -> None:
    """The routing job began: the next commit with events enqueues another one."""
    redis.delete(f"rapport:{queue_name}:webhooks:route-queued")


def invalidate_on_commit(session: Session) -> None:
    """Forget the subscribed types again once this session commits (an endpoint changed in it)."""
    session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _kick(session: Session) -> None:
    if session.in_nested_transaction():
        return                      # a savepoint was released: the transaction goes on
    if session.info.pop(_CHANGED, False):
        invalidate()
    if not session.info.pop(_WROTE, False):
        return
    kick = session.info.get(KICK)
    if kick is None:
        return
    try:
        kick()
    except Exception:   # Redis away: the periodic routing job posts the events a little later
        logger.warning("could not enqueue webhook routing; the periodic job will", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_WROTE, None)
    session.info.pop(_CHANGED, None)
