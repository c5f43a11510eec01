"""Logging for long-running processes: one line per event a person cares about, per-job chatter at DEBUG.

RQ logs every job it takes and finishes at INFO (three lines per send batch); a campaign of 100,000 recipients is
hundreds of batches, which buried the lines that matter (a campaign started, paused, finished; a failure).
"""

from __future__ import annotations

import logging

# RQ's message templates for a job taken, finished and its result kept (rq.worker, rq 2.x).
_PER_JOB = frozenset({
    "Worker %s: %s: %s (%s)",
    "Worker %s: %s: %s",
    "Successfully completed %s job in %ss on worker %s",
    "Successfully completed job %s in %ss on worker %s",
    "Worker %s: job %s result discarded immediately",
    "Worker %s: job %s result is kept for %s seconds",
    "Worker %s: job %s result will never expire, clean up result key manually",
})


class JobChatter(logging.Filter):
    """Demote RQ's per-job INFO lines to DEBUG: shown only when DEBUG logging is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.msg not in _PER_JOB:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_job_logs() -> None:
    """Install JobChatter on RQ's worker logger (idempotent)."""
    logger = logging.getLogger("rq.worker")
    if not any(isinstance(f, JobChatter) for f in logger.filters):
        logger.addFilter(JobChatter())
