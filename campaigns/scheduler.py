"""Periodic work: a registry of tasks (every N minutes, or daily at a UTC time) and a light ticker per worker.

Every worker process runs a Ticker thread. On each tick it computes, for every task, the *slot* that is due now (the
current N-minute window, or the date of the last daily time that has passed) and tries `SET key NX EX` in Redis for
that slot: exactly one process, on any machine, wins and enqueues the task's job; the others see the key and do
nothing. The slot key outlives its slot, so a restart never runs a slot twice, and a slot that was missed while no
worker ran (a nightly task at 03:15 with every worker down) runs once when a worker comes back.
Jobs are thin RQ entry points; the database work they do is idempotent, so even a lost Redis only repeats a slot.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError
from rq.scheduler import RQScheduler

from campaigns import queueing
from campaigns.models import utcnow
from campaigns.queueing import PERIODIC, PeriodicTask
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

TICK_SECONDS = 15.0


def _key(rt: Runtime, suffix: str) -> str:
    return f"rapport:scheduler:{rt.settings.queue_name}:{suffix}"


def tick(rt: Runtime, now: dt.datetime | None = None, *, owner: str = "") -> list[str]:
    """Enqueue every task whose current slot nobody has claimed yet; returns the names this call enqueued."""
    now = now or utcnow()
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    enqueued = []
    redis = rt.redis
    for task in PERIODIC.values():
        slot = task.slot(now)
        if not redis.set(_key(rt, f"{task.name}:{slot}"), owner, nx=True, ex=task.key_ttl):
            continue
        queueing.enqueue(rt.queue, task.job, description=f"periodic {task.name} {slot}")
        redis.hset(_key(rt, "last"), task.name, now.isoformat())
        enqueued.append(task.name)
        logger.info("periodic task %s enqueued for slot %s by %s", task.name, slot, owner)
    redis.set(_key(rt, "heartbeat"), now.isoformat(), ex=3600)
    return enqueued


Sweep = Callable[[Runtime, dt.datetime], object]


def sweep_tick(rt: Runtime, sweep: Sweep, now: dt.datetime | None = None, *, owner: str = "") -> bool:
    """Run `sweep` (the delivery sweeper) here if nobody has run it in the current sweep slot (a few seconds)."""
    now = now or utcnow()
    slot = math.floor(now.timestamp() / rt.settings.sweep_seconds)
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    if not rt.redis.set(_key(rt, f"sweep:{slot}"), owner, nx=True, ex=60):
        return False
    sweep(rt, now)
    return True


@dataclass(frozen=True)
class TaskStatus:
    task: PeriodicTask
    last_run: dt.datetime | None
    next_run: dt.datetime


def status(rt: Runtime, now: dt.datetime | None = None) -> tuple[list[TaskStatus], dt.datetime | None]:
    """Each task with its last and next run, and the last tick of any worker (None: no ticker is running)."""
    now = now or utcnow()
    try:
        last = {k.decode(): v.decode() for k, v in (rt.redis.hgetall(_key(rt, "last")) or {}).items()}
        beat = rt.redis.get(_key(rt, "heartbeat"))
    except RedisError:
        last, beat = {}, None
    rows = [TaskStatus(t, dt.datetime.fromisoformat(last[t.name]) if t.name in last else None, t.next_run(now))
            for t in PERIODIC.values()]
    return rows, dt.datetime.fromisoformat(beat.decode()) if beat else None


class Ticker(threading.Thread):
    """A daemon thread that calls tick() every TICK_SECONDS and sweep_tick() every sweep_seconds until stop();
    errors (Redis or the database away for a moment) are logged, never fatal."""

    def __init__(self, rt: Runtime, sweep: Sweep, interval: float = TICK_SECONDS) -> None:
        super().__init__(name="rapport-scheduler", daemon=True)
        self.rt = rt
        self.sweep = sweep
        self.interval = interval
        self._stop_event = threading.Event()
        self._rq_scheduler = None

    def _promote_delayed(self) -> None:
        """Move due delayed jobs (enqueue_at / enqueue_in) to the queue, one process at a time (RQ's lock)."""
        if self._rq_scheduler is None:
            self._rq_scheduler = RQScheduler(self.rt.queues, connection=self.rt.redis)
        if self._rq_scheduler.acquire_locks():
            self._rq_scheduler.enqueue_scheduled_jobs()

    def run(self) -> None:
        logger.info("scheduler ticker started (%d tasks, every %.0fs)", len(PERIODIC), self.interval)
        step = min(self.interval, self.rt.settings.sweep_seconds)
        next_tick = 0.0
        while not self._stop_event.is_set():
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.interval
                try:
                    tick(self.rt)
                except Exception:   # Redis away for a moment: try again next tick
                    logger.exception("scheduler tick failed")
            try:
                self._promote_delayed()
            except Exception:
                logger.exception("moving delayed jobs to the queue failed")
            try:
                sweep_tick(self.rt, self.sweep)
            except Exception:
                logger.exception("delivery sweep failed")
            self._stop_event.wait(step)

    def stop(self) -> None:
        self._stop_event.set()
