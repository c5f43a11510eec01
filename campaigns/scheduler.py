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
from dataclasses import dataclass

from redis.exceptions import RedisError

from campaigns.models import utcnow
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

TICK_SECONDS = 15.0


@dataclass(frozen=True)
class PeriodicTask:
    """One periodic job: `func` (a dotted RQ job path) every `every`, or daily `at` (UTC)."""

    name: str
    func: str
    description: str
    every: dt.timedelta | None = None
    at: dt.time | None = None
    job_timeout: int = 1800

    def __post_init__(self) -> None:
        if (self.every is None) == (self.at is None):
            raise ValueError(f"task {self.name}: give exactly one of every= and at=")
        if self.every is not None and self.every < dt.timedelta(seconds=30):
            raise ValueError(f"task {self.name}: run at most every 30 seconds")

    def slot(self, now: dt.datetime) -> str:
        """The slot due at `now`: the N-minute window number, or the date of the latest daily time passed."""
        if self.every is not None:
            return str(math.floor(now.timestamp() / self.every.total_seconds()))
        today = now.astimezone(dt.UTC).date()
        at = dt.datetime.combine(today, self.at, dt.UTC)
        return (today if now >= at else today - dt.timedelta(days=1)).isoformat()

    def next_run(self, now: dt.datetime) -> dt.datetime:
        """When the next slot starts."""
        if self.every is not None:
            seconds = self.every.total_seconds()
            return dt.datetime.fromtimestamp((math.floor(now.timestamp() / seconds) + 1) * seconds, dt.UTC)
        at = dt.datetime.combine(now.astimezone(dt.UTC).date(), self.at, dt.UTC)
        return at if at > now else at + dt.timedelta(days=1)

    @property
    def key_ttl(self) -> int:
        """How long a slot's key lives: well past the slot, so nobody runs it again."""
        if self.every is not None:
            return max(120, int(self.every.total_seconds() * 3))
        return 3 * 24 * 3600

    @property
    def schedule(self) -> str:
        if self.at is not None:
            return f"daily at {self.at:%H:%M} UTC"
        minutes = self.every.total_seconds() / 60
        return f"every {minutes:g} minute{'s' if minutes != 1 else ''}"


TASKS: dict[str, PeriodicTask] = {}


def register(task: PeriodicTask) -> PeriodicTask:
    """Add (or replace) a periodic task; call at import time of this module or of a module the worker imports."""
    TASKS[task.name] = task
    return task


register(PeriodicTask("automations", "campaigns.jobs.run_automations",
                      "send what automations have due (birthdays, calendar, cadence, welcome series)",
                      every=dt.timedelta(minutes=1), job_timeout=3600))
register(PeriodicTask("release-held", "campaigns.jobs.release_held",
                      "re-queue sends held by the sending policy once they may go, expire old ones",
                      every=dt.timedelta(minutes=5)))
register(PeriodicTask("scheduled-campaigns", "campaigns.jobs_campaigns.start_due_campaigns",
                      "start scheduled campaigns whose time has passed (safety net for lost delayed jobs)",
                      every=dt.timedelta(minutes=5)))
register(PeriodicTask("engagement-decay", "campaigns.jobs_feedback.decay_scores",
                      "rewrite engagement scores as of now, so segments compare the stored column",
                      at=dt.time(3, 15)))
register(PeriodicTask("signup-expiry", "campaigns.jobs.expire_signups",
                      "expire sign-ups never confirmed (and contacts that were only ever pending)",
                      every=dt.timedelta(hours=1)))
register(PeriodicTask("import-cleanup", "campaigns.jobs_imports.cleanup_import_files",
                      "delete uploaded CSV files and error reports older than 7 days",
                      at=dt.time(3, 45)))
register(PeriodicTask("digest", "campaigns.jobs.send_digests",
                      "send weekly/monthly readers one digest of the nurture mail held for them",
                      at=dt.time(7, 0)))
register(PeriodicTask("export-cleanup", "campaigns.jobs_admin.cleanup_exports", "delete contact export files older than RAPPORT_EXPORT_KEEP_HOURS", every=dt.timedelta(hours=1)))  # noqa: E501


def _key(rt: Runtime, suffix: str) -> str:
    return f"rapport:scheduler:{rt.settings.queue_name}:{suffix}"


def tick(rt: Runtime, now: dt.datetime | None = None, *, owner: str = "") -> list[str]:
    """Enqueue every task whose current slot nobody has claimed yet; returns the names this call enqueued."""
    now = now or utcnow()
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    enqueued = []
    redis = rt.redis
    for task in list(TASKS.values()):
        slot = task.slot(now)
        if not redis.set(_key(rt, f"{task.name}:{slot}"), owner, nx=True, ex=task.key_ttl):
            continue
        rt.queue.enqueue(task.func, job_timeout=task.job_timeout, description=f"periodic {task.name} {slot}")
        redis.hset(_key(rt, "last"), task.name, now.isoformat())
        enqueued.append(task.name)
        logger.info("periodic task %s enqueued for slot %s by %s", task.name, slot, owner)
    redis.set(_key(rt, "heartbeat"), now.isoformat(), ex=3600)
    return enqueued


def sweep_tick(rt: Runtime, now: dt.datetime | None = None, *, owner: str = "") -> bool:
    """Run the delivery sweeper here if nobody has run it in the current sweep slot (a few seconds long)."""
    from campaigns.sending import sweeper  # services build on this package; imported when first used

    now = now or utcnow()
    slot = math.floor(now.timestamp() / rt.settings.sweep_seconds)
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    if not rt.redis.set(_key(rt, f"sweep:{slot}"), owner, nx=True, ex=60):
        return False
    sweeper.sweep(rt, now)
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
            for t in TASKS.values()]
    return rows, dt.datetime.fromisoformat(beat.decode()) if beat else None


class Ticker(threading.Thread):
    """A daemon thread that calls tick() every TICK_SECONDS and sweep_tick() every sweep_seconds until stop();
    errors (Redis or the database away for a moment) are logged, never fatal."""

    def __init__(self, rt: Runtime, interval: float = TICK_SECONDS) -> None:
        super().__init__(name="rapport-scheduler", daemon=True)
        self.rt = rt
        self.interval = interval
        self._stop_event = threading.Event()
        self._rq_scheduler = None

    def _promote_delayed(self) -> None:
        """Move due delayed jobs (enqueue_at / enqueue_in) to the queue, one process at a time (RQ's lock)."""
        from rq.scheduler import RQScheduler

        if self._rq_scheduler is None:
            self._rq_scheduler = RQScheduler([self.rt.queue], connection=self.rt.redis)
        if self._rq_scheduler.acquire_locks():
            self._rq_scheduler.enqueue_scheduled_jobs()

    def run(self) -> None:
        logger.info("scheduler ticker started (%d tasks, every %.0fs)", len(TASKS), self.interval)
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
                sweep_tick(self.rt)
            except Exception:
                logger.exception("delivery sweep failed")
            self._stop_event.wait(step)

    def stop(self) -> None:
        self._stop_event.set()
