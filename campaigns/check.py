"""`python -m campaigns check`: exit 0 when workers are alive, the queue moves and the scheduler ticks, else 1."""

from __future__ import annotations

import sys
from typing import TextIO

from redis.exceptions import RedisError

from campaigns import scheduler
from campaigns.config import Settings
from campaigns.ops import health, liveness
from campaigns.runtime import Runtime


def check(settings: Settings, out: TextIO | None = None) -> int:
    """Print the state of the database, Redis, workers, queue and scheduler; 0 when all is well, 1 otherwise."""
    out = out or sys.stdout
    rt = Runtime(settings)
    try:
        ready = health.readiness(rt)
        failed = [f"{name}: {why}" for name, why in ready.items() if why != "ok"]
        if ready["redis"] == "ok":
            try:
                state = liveness.queue_state(rt, scheduler.status(rt)[1])
            except RedisError as exc:
                failed.append(f"redis: {exc}")
            else:
                _report(state, out)
                failed.extend(state.problems)
    finally:
        rt.close()
    for problem in failed:
        print(f"FAIL {problem}", file=out)
    if not failed:
        print("OK", file=out)
    return 1 if failed else 0


def _report(state: liveness.QueueState, out: TextIO) -> None:
    for w in state.workers:
        beat = f"{w.last_heartbeat:%Y-%m-%d %H:%M:%S} UTC" if w.last_heartbeat else "never"
        print(f"worker {w.name} on {w.hostname}: {w.state}, last heartbeat {beat}"
              f"{'' if w.alive else ' (dead)'}{', job ' + w.current_job if w.current_job else ''}", file=out)
    jobs = ", ".join(f"{n} {name}" for name, n in state.jobs.items())
    oldest = f", oldest waiting {int(state.oldest_age.total_seconds())} s" if state.oldest_age else ""
    print(f"queue: {jobs}{oldest}", file=out)
    tick = f"{state.scheduler_tick:%Y-%m-%d %H:%M:%S} UTC" if state.scheduler_tick else "never"
    print(f"scheduler: last tick {tick}", file=out)
