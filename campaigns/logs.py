"""Logging for every Rapport process, configured in one place: the web app (create_app) and the worker (worker.py).

Lines carry a UTC timestamp, the level and the logger; `LOG_FORMAT=json` writes one JSON object per line for log
shippers. Inside an RQ job every line also carries `job_id` and, when the job has them, `campaign_id`, `batch`
(the contact range "lo-hi") and `import_id`: the worker class below sets them in a context variable around each job,
and a filter on the handler copies them onto every record, whichever module logged it. `SENTRY_DSN` sends errors
to Sentry when sentry-sdk is installed (`pip install rapport[sentry]`), and is ignored with a warning otherwise.

RQ logs every job it takes and finishes at INFO (three lines per send batch); a campaign of 100,000 recipients is
hundreds of batches, which buried the lines that matter, so quiet_job_logs() demotes those lines to DEBUG.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from rq import SimpleWorker, Worker
from rq.job import Job
from rq.queue import Queue

from campaigns.config import Settings

logger = logging.getLogger(__name__)

FIELDS = ("campaign_id", "batch", "job_id", "import_id")
_context: ContextVar[dict[str, Any] | None] = ContextVar("rapport_log_context", default=None)


class ContextFilter(logging.Filter):
    """Copy the current job's fields onto each record (None when outside a job), so formatters can use them."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ctx.get(name))
        return True


def _utc(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2026-12-02T03:50:00.123Z INFO campaigns.tasks: message campaign_id=3 batch=1-500 job_id=…`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extra = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS
                         if getattr(record, name, None) is not None)
        if extra:
            line = f"{line} [{extra}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the job fields present, exc (a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _utc(record), "level": record.levelname, "logger": record.name,
                               "message": record.getMessage(), "process": record.process}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners and daemons swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _handler(log_format: str) -> logging.Handler:
    handler = _StderrHandler()
    handler.rapport = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure(settings: Settings) -> logging.Handler:
    """Install Rapport's one log handler on the root logger (replacing an earlier one) and the Sentry hook."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "rapport", False)]:
        root.removeHandler(old)
    handler = _handler(settings.log_format)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    if settings.sentry_dsn:
        _sentry(settings)
    return handler


def _sentry(settings: Settings) -> None:
    try:
        import sentry_sdk  # an optional dependency, imported only when SENTRY_DSN is set
    except ImportError:
        logger.warning("SENTRY_DSN is set but sentry-sdk is not installed (pip install 'rapport[sentry]'); "
                       "errors are only logged")
        return
    # Flask and RQ integrations switch themselves on when those packages are importable.
    sentry_sdk.init(dsn=settings.sentry_dsn, send_default_pii=False)


def handler_from_env() -> logging.Handler:
    """Rapport's handler in the LOG_FORMAT of the environment (a factory for logging.config.dictConfig)."""
    return _handler("json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text")


def gunicorn_logconfig() -> dict[str, Any]:
    """A gunicorn `logconfig_dict`: gunicorn's error and access lines go through Rapport's handler and format.

    The master process logs before any app exists; the app factory later replaces the handler with an equal one.
    """
    level = os.environ.get("LOG_LEVEL", "").strip().upper() or "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level, "handlers": ["rapport"]},
        "loggers": {"gunicorn.error": {"level": level, "handlers": [], "propagate": True},
                    "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True}},
        "handlers": {"rapport": {"()": "campaigns.logs.handler_from_env"}},
        "formatters": {},
    }


@contextlib.contextmanager
def job_context(**fields: Any) -> Iterator[None]:
    """Within the block, every log line carries fields (e.g. job_id, campaign_id)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def job_fields(job: Job) -> dict[str, Any]:
    """job_id, and campaign_id / batch / import_id when the job function takes them (read from its signature)."""
    fields: dict[str, Any] = {"job_id": job.id}
    try:
        bound = inspect.signature(job.func).bind_partial(*job.args, **job.kwargs).arguments
    except (TypeError, ValueError, AttributeError, ImportError):
        return fields
    for name in ("campaign_id", "import_id"):
        if name in bound:
            fields[name] = bound[name]
    if "lo" in bound and "hi" in bound:
        fields["batch"] = f"{bound['lo']}-{bound['hi']}"
    return fields


class _JobContext:
    """Worker mixin: run each job inside job_context(job_fields(job)) (in the work horse when forking)."""

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with job_context(**job_fields(job)):
            return super().perform_job(job, queue)  # type: ignore[misc]


class ContextWorker(_JobContext, Worker):
    """A forking RQ worker whose job log lines carry the job's fields."""


class ContextSimpleWorker(_JobContext, SimpleWorker):
    """An in-process RQ worker whose job log lines carry the job's fields."""


def worker_class(fork: bool) -> type[Worker]:
    """The RQ worker class worker.py runs."""
    return ContextWorker if fork else ContextSimpleWorker


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
    rq_logger = logging.getLogger("rq.worker")
    if not any(isinstance(f, JobChatter) for f in rq_logger.filters):
        rq_logger.addFilter(JobChatter())
