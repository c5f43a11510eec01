"""Stops as the sender sees them: which stop marks hold back a campaign's message, and trimming old marks.

Recording a stop (the session listener, note(), the Redis key) is foundation work in campaigns.stop_marks, which
every Runtime configures; its names are re-exported here for the senders and features that already use them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from redis import Redis

from campaigns.stop_marks import KEEP_SECONDS, RECORDER, key, note, recorder

__all__ = ["KEEP_SECONDS", "RECORDER", "key", "note", "recorder", "stopped_members", "trim"]


def stopped_members(kind: str, topic_ids: Iterable[int], all_contacts: bool) -> tuple[str, ...]:
    """Member templates (with {c} for the contact id) that stop a campaign of this kind and audience."""
    members = ["s:{c}"]
    if kind != "transactional":
        members.append("u:{c}")
        if not all_contacts:
            members += [f"t:{{c}}:{t}" for t in sorted(topic_ids)]
    return tuple(members)


def trim(redis: Redis, queue_name: str) -> None:
    """Forget stops older than KEEP_SECONDS (every claim re-checks the database long before that)."""
    redis.zremrangebyscore(key(queue_name), "-inf", time.time() - KEEP_SECONDS)
