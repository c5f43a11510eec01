"""Is anyone working? RQ worker heartbeats, the queue's depth and oldest job, and the scheduler ticker's last tick.

Read by `python -m campaigns check` (exit code for cron/systemd/monitoring), the admin's System page and /metrics
(QueueState.figures() is what the metrics collector exports). The scheduler's last tick is passed in by the caller
(campaigns.scheduler.status, an entry point this layer must not import).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from rq import Worker
from rq.defaults import DEFAULT_WORKER_TTL

from campaigns.metrics import QueueFigures, age
from campaigns.runtime import Runtime

# An idle RQ worker heartbeats every worker_ttl - 15 s (it blocks on the queue that long); one that missed a beat
# by this margin is gone (killed without a chance to unregister, host down).
ALIVE_WITHIN = dt.timedelta(seconds=DEFAULT_WORKER_TTL + 60)
# The oldest waiting job may be this old before the queue counts as stuck (batches queue behind each other).
STUCK_AFTER = dt.timedelta(minutes=10)
# A transactional message is taken before any batch: one waiting this long means the workers cannot keep up.
TX_STUCK_AFTER = dt.timedelta(minutes=1)
# Every ticker ticks each campaigns.scheduler.TICK_SECONDS; a few missed ticks mean no worker runs the scheduler.
TICKER_LATE = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class WorkerInfo:
    """One registered RQ worker."""

    name: str
    hostname: str
    state: str
    last_heartbeat: dt.datetime | None
    current_job: str
    alive: bool


@dataclass
class QueueState:
    """What the queue and its workers look like now."""

    now: dt.datetime
    workers: list[WorkerInfo]
    jobs: dict[str, int]                       # queued, started, scheduled, deferred, failed
    oldest_age: dt.timedelta | None            # of the oldest job waiting (None: nothing waits)
    scheduler_tick: dt.datetime | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def figures(self) -> QueueFigures:
        """The gauges /metrics exports."""
        tick = self.scheduler_tick
        return QueueFigures(self.jobs, self.oldest_age, len([w for w in self.workers if w.alive]),
                            self.now - tick if tick else None)


def queue_state(rt: Runtime, scheduler_tick: dt.datetime | None, now: dt.datetime | None = None) -> QueueState:
    """Read workers and registries from Redis (RedisError propagates) and judge them with the scheduler's last tick
    (campaigns.scheduler.status; None: no scheduler ever ticked)."""
    now = now or dt.datetime.now(dt.UTC)
    workers = []
    for w in Worker.all(queue=rt.queue):
        beat_age = age(w.last_heartbeat, now)
        workers.append(WorkerInfo(w.name, w.hostname or "", str(w.get_state()), w.last_heartbeat,
                                  w.get_current_job_id() or "", beat_age is not None and beat_age <= ALIVE_WITHIN))
    jobs = dict.fromkeys(("queued", "started", "scheduled", "deferred", "failed"), 0)
    oldest_of: dict[str, dt.timedelta | None] = {}
    for q in rt.queues:     # the transactional queue and the bulk queue, counted together
        for name, count in (("queued", q.count), ("started", q.started_job_registry.count),
                            ("scheduled", q.scheduled_job_registry.count),
                            ("deferred", q.deferred_job_registry.count), ("failed", q.failed_job_registry.count)):
            jobs[name] += count
        first = q.get_job_ids(0, 1)
        job = q.fetch_job(first[0]) if first else None
        oldest_of[q.name] = age(job.enqueued_at, now) if job is not None else None
    oldest = max((a for a in oldest_of.values() if a is not None), default=None)
    tx_oldest = oldest_of.get(rt.tx_queue.name)
    tick = scheduler_tick
    state = QueueState(now, workers, jobs, oldest, tick)
    alive = [w for w in workers if w.alive]
    if not alive:
        state.problems.append("no worker is alive (no RQ heartbeat in the last "
                              f"{int(ALIVE_WITHIN.total_seconds())} s)")
    if oldest is not None and oldest > STUCK_AFTER:
        state.problems.append(f"the queue is stuck: its oldest job has waited {int(oldest.total_seconds())} s "
                              f"({jobs['queued']} jobs waiting)")
    if tx_oldest is not None and tx_oldest > TX_STUCK_AFTER:
        state.problems.append(f"transactional mail waits: its oldest message has been queued "
                              f"{int(tx_oldest.total_seconds())} s (workers take it before any batch)")
    tick_age = age(tick, now)
    if tick_age is None or tick_age > TICKER_LATE:
        when = "never" if tick_age is None else f"{int(tick_age.total_seconds())} s ago"
        state.problems.append(f"no scheduler is ticking (last tick: {when}); periodic tasks do not run")
    return state
