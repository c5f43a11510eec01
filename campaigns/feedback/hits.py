"""The tracking-hit queue: recipient endpoints push compact hits onto a Redis list; a drain writes them in bulk.

Durability: a hit is answered only after Redis accepted it. The drain moves hits atomically (LMOVE, in a Lua script)
from the queue to a processing list, writes their events in one transaction and only then deletes the processing
list. A drain killed in between leaves the hits in the processing list; the next drain replays them and skips the
ones whose event already exists (every hit carries a unique id, stored as the event's dedupe_key). So a hit the
endpoint answered becomes exactly one event, also across a worker restart.

Scheduling: RPUSH answers the queue's new length; the endpoint enqueues a drain job when it was the first hit of an
empty queue (and every ENQUEUE_EVERY hits, in case a drain died). A drain runs until the queue is empty and looks
once more after releasing its lock, so no hit is left waiting. `python -m campaigns drain-hits` from cron (every
minute) is a cheap safety net for a drain killed while traffic is quiet.
"""

from __future__ import annotations

import collections
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis import Redis

from campaigns import metrics, queueing
from campaigns.queueing import Job
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

QUEUE_KEY = "rapport:hits"
PROCESSING_KEY = "rapport:hits:processing"
LOCK_KEY = "rapport:hits:lock"
ENQUEUE_EVERY = 1000
LOCK_TTL = 30               # refreshed after every batch; a killed drain blocks others this long at most
BATCH = 1000

# Move up to ARGV[1] hits from the queue to the processing list in one atomic step.
_MOVE = """
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not v then break end
  out[#out + 1] = v
end
return out
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class HitKind(StrEnum):
    """What a tracking hit records (the event type it becomes)."""

    OPEN = "open"
    CLICK = "click"


class HitSource(StrEnum):
    """Who saw the hit: our tracking endpoint, or a relay's webhook reporting an open or click."""

    WEB = "web"
    RELAY = "relay"


_KIND_CODES = {"o": HitKind.OPEN, "c": HitKind.CLICK}   # the first letter, as queued


@dataclass(frozen=True)
class Hit:
    """One request to a tracking URL, as the endpoint saw it."""

    kind: HitKind
    send_id: int
    link_id: int = 0
    at: float = 0.0      # unix time
    user_agent: str = ""
    ip: str = ""
    head: bool = False   # a HEAD request (link checkers, scanners)
    source: str = HitSource.WEB
    key: str = ""        # unique id: the event's dedupe_key
    tx_id: int = 0       # a transactional message's hit (send_id 0): campaigns.feedback.tx_hits records it

    def dumps(self) -> str:
        return json.dumps({"k": self.kind[0], "s": self.send_id, "l": self.link_id, "t": round(self.at, 3),
                           "u": self.user_agent[:300], "i": self.ip[:64], "h": int(self.head),
                           "o": self.source, "id": self.key, **({"x": self.tx_id} if self.tx_id else {})},
                          separators=(",", ":"))

    @classmethod
    def loads(cls, raw: bytes | str) -> Hit | None:
        """Parse a queued hit; None for anything malformed (never raises)."""
        try:
            d = json.loads(raw)
            kind = _KIND_CODES[d["k"]]
            return cls(kind=kind, send_id=int(d["s"]), link_id=int(d.get("l", 0)), at=float(d["t"]),
                       user_agent=str(d.get("u", ""))[:300], ip=str(d.get("i", ""))[:64], head=bool(d.get("h")),
                       source=str(d.get("o", "web"))[:10], key=str(d["id"])[:64], tx_id=int(d.get("x", 0)))
        except (ValueError, KeyError, TypeError):
            return None


def new_key() -> str:
    """A unique, unguessable hit id."""
    return secrets.token_hex(12)


def push(rt: Runtime, hit: Hit) -> None:
    """Queue a hit (one Redis command) and enqueue a drain job when the queue was empty or grew by ENQUEUE_EVERY."""
    length = rt.redis.rpush(QUEUE_KEY, hit.dumps())
    # A running drain empties the queue before it stops, so "was empty" is when none is running; every
    # ENQUEUE_EVERY hits another is queued in case a drain died (it returns at once while one holds the lock).
    if length == 1 or length % ENQUEUE_EVERY == 0:
        queueing.enqueue(rt.queue, Job.DRAIN_HITS)


def pending(redis: Redis) -> int:
    """Hits waiting in the queue or in a processing list."""
    return int(redis.llen(QUEUE_KEY)) + int(redis.llen(PROCESSING_KEY))


Writer = Callable[[Sequence[Hit], bool], int]


def drain(rt: Runtime, write: Writer, *, batch: int = BATCH) -> int:
    """Move hits to the processing list in batches and write them with write(hits, replay); returns hits written.

    Only one drain runs at a time (a Redis lock); a second one returns at once and the first picks up its hits.
    """
    redis = rt.redis
    token = uuid.uuid4().hex
    done = 0
    move = redis.register_script(_MOVE)
    release = redis.register_script(_RELEASE)
    while True:
        if not redis.set(LOCK_KEY, token, nx=True, ex=LOCK_TTL):
            return done
        try:
            leftover = redis.lrange(PROCESSING_KEY, 0, -1)
            if leftover:
                logger.warning("replaying %d tracking hits of an interrupted drain", len(leftover))
                done += _write(write, leftover, replay=True, redis=redis)
                redis.delete(PROCESSING_KEY)
            while True:
                raw = move(keys=[QUEUE_KEY, PROCESSING_KEY], args=[batch])
                if not raw:
                    break
                done += _write(write, raw, replay=False, redis=redis)
                redis.delete(PROCESSING_KEY)
                redis.expire(LOCK_KEY, LOCK_TTL)
        finally:
            release(keys=[LOCK_KEY], args=[token])
        # A drain job enqueued while we held the lock gave up; look once more after letting go.
        if not redis.llen(QUEUE_KEY):
            return done


def _write(write: Writer, raw: list[Any], *, replay: bool, redis: Redis) -> int:
    hits = [h for h in (Hit.loads(r) for r in raw) if h is not None]
    if len(hits) != len(raw):
        logger.warning("dropped %d malformed tracking hits", len(raw) - len(hits))
    started = time.monotonic()
    n = write(hits, replay)
    logger.info("recorded %d tracking hits in %.0f ms", n, (time.monotonic() - started) * 1000)
    metrics.record_hits(redis, collections.Counter(h.kind for h in hits))
    return len(hits)
