"""Start an RQ worker for Rapport's queue: `rapport-worker [--burst]`. Configuration comes from the environment.

The worker outlives Redis restarts: when its connection fails it waits (with backoff) and starts working again,
so a production supervisor restarting it (deploy/) is for crashes and upgrades, not for every Redis blip.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import campaigns.tasks  # noqa: F401 - every job's code, imported before the first job arrives
from campaigns import logs
from campaigns.config import ConfigError
from campaigns.config_checks import load_settings
from campaigns.runtime import Runtime, install
from campaigns.scheduler import Ticker
from campaigns.sending import sweeper

logger = logging.getLogger("rapport.worker")
MAX_BACKOFF = 10.0
# CPython's GIL switch interval (default 5 ms). A send batch renders in one thread while sender threads wait on
# sockets; each reply read (the relay's, Redis's) needs the GIL back, which the rendering thread gives up only
# after this interval. At 5 ms a relay's 250 could sit that long before the acceptance record (docs/delivery.md),
# and a sender thread stalled behind rendering several times per message.
SWITCH_INTERVAL = 0.0005


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rapport-worker", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--fork", action="store_true",
                        help="run each job in a forked child (isolation) instead of in-process (speed)")
    parser.add_argument("--name", default=None, help="worker name shown in RQ")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="do not run the periodic-task ticker in this worker (campaigns.scheduler)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        parser.exit(2, f"rapport-worker: {exc}\n")
    logs.configure(settings)
    sys.setswitchinterval(SWITCH_INTERVAL)
    logs.quiet_job_logs()    # RQ's lines per job (three per send batch) only at DEBUG
    rt = install(Runtime(settings))
    # DKIM in a helper process, so the rendering thread never waits for an RSA signature (mailer.dkim_helper).
    rt.signing_helper = settings.dkim_helper and (os.cpu_count() or 1) > 1
    # In-process by default: the SMTP pool, the DKIM key and compiled campaigns stay warm across batch jobs.
    worker_class = logs.worker_class(fork=args.fork)
    # Periodic tasks, the delivery sweeper and delayed jobs (enqueue_at): a daemon thread of this process, so it
    # ends with it (RQ's own scheduler would be a forked child that outlives a killed worker).
    ticker = None if args.burst or args.no_scheduler else Ticker(rt, sweeper.sweep)
    if ticker is not None:
        ticker.start()
    backoff = 1.0
    attempt = 0
    try:
        while True:
            name = args.name if not attempt or args.name is None else f"{args.name}-{attempt}"
            try:
                worker = worker_class(rt.queues, connection=rt.redis, name=name)   # transactional first
                worker.work(burst=args.burst, logging_level=settings.log_level, with_scheduler=args.burst)
                break
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Redis restarting or unreachable for a moment: wait and work again (a new RQ registration; the
                # sweeper re-enqueues whatever the restart lost, from the database).
                attempt += 1
                logger.warning("Redis unavailable (%s); working again in %.0fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
    finally:
        if ticker is not None:
            ticker.stop()
    rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
