"""Start an RQ worker for Rapport's queue: `python worker.py [--burst]`. Configuration comes from the environment."""

from __future__ import annotations

import argparse
import logging
import sys

from rq import SimpleWorker, Worker

from campaigns.config import from_env
from campaigns.logs import quiet_job_logs
from campaigns.runtime import Runtime, install
from campaigns.scheduler import Ticker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--fork", action="store_true",
                        help="run each job in a forked child (isolation) instead of in-process (speed)")
    parser.add_argument("--name", default=None, help="worker name shown in RQ")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="do not run the periodic-task ticker in this worker (campaigns.scheduler)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_job_logs()    # RQ's lines per job (three per send batch) only at DEBUG
    rt = install(Runtime(from_env()))
    # In-process by default: the SMTP pool, the DKIM key and compiled campaigns stay warm across batch jobs.
    worker_class = Worker if args.fork else SimpleWorker
    worker = worker_class([rt.queue], connection=rt.redis, name=args.name)
    # Periodic tasks (automations, nightly decay…): every worker ticks; Redis elects one per slot.
    ticker = None if args.burst or args.no_scheduler else Ticker(rt)
    if ticker is not None:
        ticker.start()
    # The scheduler runs delayed jobs: retries of deferred sends (4xx replies) at their next attempt time.
    try:
        worker.work(burst=args.burst, logging_level="INFO", with_scheduler=True)
    finally:
        if ticker is not None:
            ticker.stop()
    rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
