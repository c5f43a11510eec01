"""One way to put work on the RQ queue: every background job is named once here and enqueued through this module.

`Job` is the vocabulary of background work; each member's value is the name of its function in `campaigns.tasks`,
the single module of RQ entry points (thin functions that take ids, use `campaigns.runtime.current()` and call one
capability). `RUNS` says once how each job runs: timeout, retry delays, result lifetime. Code at any level enqueues
with

    queueing.enqueue(rt.queue, Job.SEND_BATCH, campaign_id, lo, hi)

without importing `campaigns.tasks` (which imports every capability, so importing it from a capability would be an
upward import and a cycle). tests/campaigns/test_architecture.py checks that every Job has its function in
campaigns.tasks and a line in docs/architecture.md, and that campaigns.tasks holds no job without a Job.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rq import Queue, Retry
from rq.job import Job as RQJob

TASKS_MODULE = "campaigns.tasks"


class Job(StrEnum):
    """Every background job. The value is its function's name in campaigns.tasks."""

    DISPATCH_CAMPAIGN = "dispatch_campaign"
    SEND_BATCH = "send_batch"
    SEND_CAMPAIGN = "send_campaign"
    START_SCHEDULED = "start_scheduled"
    START_DUE_CAMPAIGNS = "start_due_campaigns"
    RELEASE_HELD = "release_held"
    SEND_DIGESTS = "send_digests"
    RUN_AUTOMATIONS = "run_automations"
    SIGNUP_REQUEST = "signup_request"
    EXPIRE_SIGNUPS = "expire_signups"
    IMPORT_CONTACTS = "import_contacts"
    CLEANUP_IMPORT_FILES = "cleanup_import_files"
    EXPORT_CONTACTS = "export_contacts"
    CLEANUP_EXPORTS = "cleanup_exports"
    REFRESH_SUMMARY = "refresh_summary"
    DRAIN_HITS = "drain_hits"
    DECAY_SCORES = "decay_scores"
    RENDER_POST = "render_post"
    ROUTE_WEBHOOKS = "route_webhooks"
    DELIVER_WEBHOOKS = "deliver_webhooks"
    REPLY_MAIL = "reply_mail"
    RUN_FEED_MAILINGS = "run_feed_mailings"
    DECIDE_AB_TESTS = "decide_ab_tests"
    RECOMPUTE_TIERS = "recompute_tiers"
    SEND_TRANSACTIONAL = "send_transactional"
    RESUME_TRANSACTIONAL = "resume_transactional"
    DRAW_DUE = "draw_due"
    DRAW_ENTRY_LINK = "draw_entry_link"
    EVENT_MAIL = "event_mail"

    @property
    def path(self) -> str:
        """The dotted path RQ stores and the worker imports."""
        return f"{TASKS_MODULE}.{self.value}"


@dataclass(frozen=True)
class Run:
    """How a job runs: timeout (seconds), retry delays (one retry per entry), result and failure lifetimes."""

    timeout: int = 1800
    retry: tuple[int, ...] = ()
    result_ttl: int | None = None
    failure_ttl: int | None = None

    def options(self, timeout_name: str = "job_timeout") -> dict[str, Any]:
        opts: dict[str, Any] = {timeout_name: self.timeout}
        if self.retry:
            opts["retry"] = Retry(max=len(self.retry), interval=list(self.retry))
        if self.result_ttl is not None:
            opts["result_ttl"] = self.result_ttl
        if self.failure_ttl is not None:
            opts["failure_ttl"] = self.failure_ttl
        return opts


HOUR = 3600
RUNS: dict[Job, Run] = {
    Job.DISPATCH_CAMPAIGN: Run(timeout=HOUR),
    Job.SEND_BATCH: Run(timeout=HOUR),
    Job.SEND_CAMPAIGN: Run(timeout=HOUR),
    Job.START_SCHEDULED: Run(timeout=HOUR),
    Job.START_DUE_CAMPAIGNS: Run(),
    Job.RELEASE_HELD: Run(),
    Job.SEND_DIGESTS: Run(),
    Job.RUN_AUTOMATIONS: Run(timeout=HOUR),
    # A public sign-up must not be lost to a short outage: three retries over ~20 minutes, failures kept a week.
    Job.SIGNUP_REQUEST: Run(timeout=120, retry=(60, 300, 900), result_ttl=0, failure_ttl=7 * 24 * HOUR),
    Job.EXPIRE_SIGNUPS: Run(),
    Job.IMPORT_CONTACTS: Run(timeout=3 * HOUR),
    Job.CLEANUP_IMPORT_FILES: Run(),
    Job.EXPORT_CONTACTS: Run(timeout=HOUR),
    Job.CLEANUP_EXPORTS: Run(),
    Job.REFRESH_SUMMARY: Run(timeout=600),
    Job.DRAIN_HITS: Run(timeout=300, result_ttl=0),
    Job.DECAY_SCORES: Run(),
    Job.RENDER_POST: Run(timeout=HOUR),
    Job.ROUTE_WEBHOOKS: Run(timeout=600, result_ttl=0),
    Job.DELIVER_WEBHOOKS: Run(timeout=900, result_ttl=0),
    Job.REPLY_MAIL: Run(timeout=600),
    Job.RUN_FEED_MAILINGS: Run(timeout=HOUR),
    Job.DECIDE_AB_TESTS: Run(timeout=600),
    Job.RECOMPUTE_TIERS: Run(timeout=HOUR),
    # One message; retries after a 4xx are the job's own (campaigns.transactional.delivery), not RQ's.
    Job.SEND_TRANSACTIONAL: Run(timeout=300, result_ttl=0, failure_ttl=7 * 24 * HOUR),
    Job.RESUME_TRANSACTIONAL: Run(timeout=300, result_ttl=0),
    Job.DRAW_DUE: Run(timeout=600),
    Job.DRAW_ENTRY_LINK: Run(timeout=300, retry=(10, 60)),
    Job.EVENT_MAIL: Run(timeout=600),
}


@dataclass(frozen=True)
class PeriodicTask:
    """One periodic job: `job` every `every`, or daily `at` (UTC). campaigns.scheduler runs them."""

    name: str
    job: Job
    description: str
    every: dt.timedelta | None = None
    at: dt.time | None = None

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


PERIODIC: dict[str, PeriodicTask] = {task.name: task for task in (
    PeriodicTask("automations", Job.RUN_AUTOMATIONS,
                 "send what automations have due (birthdays, calendar, cadence, welcome series)",
                 every=dt.timedelta(minutes=1)),
    PeriodicTask("release-held", Job.RELEASE_HELD,
                 "re-queue sends held by the sending policy once they may go, expire old ones",
                 every=dt.timedelta(minutes=5)),
    PeriodicTask("scheduled-campaigns", Job.START_DUE_CAMPAIGNS,
                 "start scheduled campaigns whose time has passed (safety net for lost delayed jobs)",
                 every=dt.timedelta(minutes=5)),
    PeriodicTask("engagement-decay", Job.DECAY_SCORES,
                 "rewrite engagement scores as of now, so segments compare the stored column",
                 at=dt.time(3, 15)),
    PeriodicTask("signup-expiry", Job.EXPIRE_SIGNUPS,
                 "expire sign-ups never confirmed (and contacts that were only ever pending)",
                 every=dt.timedelta(hours=1)),
    PeriodicTask("import-cleanup", Job.CLEANUP_IMPORT_FILES,
                 "delete uploaded CSV files and error reports older than 7 days",
                 at=dt.time(3, 45)),
    PeriodicTask("digest", Job.SEND_DIGESTS,
                 "send weekly/monthly readers one digest of the nurture mail held for them",
                 at=dt.time(7, 0)),
    PeriodicTask("export-cleanup", Job.CLEANUP_EXPORTS,
                 "delete contact export files older than RAPPORT_EXPORT_KEEP_HOURS",
                 every=dt.timedelta(hours=1)),
    PeriodicTask("webhooks", Job.ROUTE_WEBHOOKS,
                 "route outbox events to webhook endpoints, post due deliveries and retries, forget old ones",
                 every=dt.timedelta(minutes=1)),
    PeriodicTask("reply-mail", Job.REPLY_MAIL,
                 "forward replies to their owner and send answers written in the admin (retries what failed)",
                 every=dt.timedelta(minutes=2)),
    PeriodicTask("feed-mailings", Job.RUN_FEED_MAILINGS,
                 "check the feeds of active RSS-to-email mailings that are due and mail their new items",
                 every=dt.timedelta(minutes=5)),
    PeriodicTask("abtest-decisions", Job.DECIDE_AB_TESTS,
                 "judge A/B tests whose time has come and send the winner to the rest",
                 every=dt.timedelta(minutes=1)),
    PeriodicTask("loyalty-tiers", Job.RECOMPUTE_TIERS,
                 "recompute loyalty tiers as periods roll on (promotions and demotions without a new order)",
                 at=dt.time(2, 30)),
    PeriodicTask("transactional-resume", Job.RESUME_TRANSACTIONAL,
                 "queue transactional messages whose job was lost, settle those a dead worker left sending",
                 every=dt.timedelta(minutes=1)),
    PeriodicTask("draws", Job.DRAW_DUE,
                 "draw the winners of prize draws whose entry window has closed (reveals their seed)",
                 every=dt.timedelta(minutes=5)),
    PeriodicTask("event-mail", Job.EVENT_MAIL,
                 "send event reminders the day before and tell people the waitlist moved up",
                 every=dt.timedelta(minutes=1)),
)}


def enqueue(queue: Queue, job: Job, *args: Any, description: str | None = None, at_front: bool = False) -> RQJob:
    """Enqueue a job now, with its declared timeout and retries (at_front: before the jobs already waiting)."""
    return queue.enqueue(job.path, *args, description=description, at_front=at_front, **RUNS[job].options())


def enqueue_at(queue: Queue, when: dt.datetime, job: Job, *args: Any) -> RQJob:
    """Enqueue a job for a moment (the worker's scheduler thread moves it to the queue then)."""
    return queue.enqueue_at(when, job.path, *args, **RUNS[job].options())


def enqueue_many(queue: Queue, job: Job, arg_lists: Sequence[tuple]) -> list[RQJob]:
    """Enqueue one job per argument tuple in one round trip (a campaign's batches)."""
    opts = RUNS[job].options(timeout_name="timeout")       # prepare_data's name for the timeout
    return queue.enqueue_many([Queue.prepare_data(job.path, args, **opts) for args in arg_lists])
