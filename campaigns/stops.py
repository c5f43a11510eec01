"""Stops: the moment a contact becomes unmailable, recorded in Redis before the database commit returns, so a
sender that claimed the contact a moment earlier still sees it right before the SMTP hand-off.

Every path that makes a contact unmailable converges here without calling anything: a session listener sees a
contact's status leave subscribed/pending, a topic subscription switched off, or a contact deleted, and an
explicit note(session, …) covers bulk statements the listener cannot see. Sessions of a Runtime carry a
recorder in session.info (campaigns.runtime), called at flush time, before the commit returns. Members of the sorted
set name what stopped, scored with the time:

- ``u:<contact>``  left the list (unsubscribed): no more non-transactional mail
- ``s:<contact>``  suppressed (bounced, complained, erased): no mail at all
- ``t:<contact>:<topic>``  left one topic: no more mail of that topic's campaigns

The database stays the truth (the sender re-checks eligibility per claim); the set only covers the seconds
between that check and the hand-off, so it is trimmed to the last few hours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from campaigns.models import CampaignKind, Contact, ContactStatus, Subscription

logger = logging.getLogger(__name__)

KEEP_SECONDS = 6 * 3600
RECORDER = "rapport.stops"        # session.info key of the callable that writes members to Redis
_MAILABLE = (ContactStatus.SUBSCRIBED, ContactStatus.PENDING)


def key(queue_name: str) -> str:
    """The sorted set of recent stops of one deployment (its queue name)."""
    return f"rapport:{queue_name}:stopped"


def note(session: Session, members: Iterable[str]) -> None:
    """Record stops in Redis now, before the caller commits (also for bulk statements the listener cannot see)."""
    members = set(members)
    record = session.info.get(RECORDER)
    if not members or record is None:
        return
    try:
        record(members)
    except RedisError:
        # The unsubscribe itself must not fail: the database is the truth and every claim re-checks it.
        logger.warning("could not record %d stops in Redis; the next claim's database check covers them",
                       len(members), exc_info=True)


def recorder(redis: Callable[[], Redis], queue_name: str) -> Callable[[Iterable[str]], None]:
    """A function that writes stop members to Redis now (what a Runtime puts into its sessions' info)."""

    def record(members: Iterable[str]) -> None:
        now = time.time()
        mapping = {m: now for m in members}
        if mapping:
            redis().zadd(key(queue_name), mapping)

    return record


def stopped_members(kind: str, topic_ids: Iterable[int], all_contacts: bool) -> tuple[str, ...]:
    """Member templates (with {c} for the contact id) that stop a campaign of this kind and audience."""
    members = ["s:{c}"]
    if kind != CampaignKind.TRANSACTIONAL:
        members.append("u:{c}")
        if not all_contacts:
            members += [f"t:{{c}}:{t}" for t in sorted(topic_ids)]
    return tuple(members)


def trim(redis: Redis, queue_name: str) -> None:
    """Forget stops older than KEEP_SECONDS (every claim re-checks the database long before that)."""
    redis.zremrangebyscore(key(queue_name), "-inf", time.time() - KEEP_SECONDS)


@event.listens_for(Session, "after_flush")
def _collect(session: Session, _flush_context) -> None:
    if RECORDER not in session.info:
        return
    found: set[str] = set()
    for obj in session.dirty:
        if isinstance(obj, Contact):
            hist = inspect(obj).attrs.status.history
            if not hist.deleted or obj.status in hist.deleted:
                continue
            if obj.status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED):
                found.add(f"s:{obj.id}")
            elif obj.status == ContactStatus.UNSUBSCRIBED and any(old in _MAILABLE for old in hist.deleted):
                found.add(f"u:{obj.id}")
        elif isinstance(obj, Subscription):
            hist = inspect(obj).attrs.subscribed.history
            if hist.deleted and True in hist.deleted and not obj.subscribed:
                found.add(f"t:{obj.contact_id}:{obj.topic_id}")
    for obj in session.deleted:
        if isinstance(obj, Contact):
            found.add(f"s:{obj.id}")
    if found:
        note(session, found)
