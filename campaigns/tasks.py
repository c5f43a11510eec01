"""Every RQ entry point of Rapport, one function per `campaigns.queueing.Job` (same name).

An entry point takes ids and small JSON-able values, uses the process runtime (`campaigns.runtime.current()`) and
calls one capability; no Flask, no ORM objects in arguments. What runs when, with which timeout and retries, is
declared in campaigns.queueing (Job, RUNS, PERIODIC); this module only says what each job does. Nothing below the
entry points imports it: code enqueues by Job name through campaigns.queueing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict

from sqlalchemy import select

from campaigns import (
    capabilities,  # noqa: F401 - every feature registers its part in messages
    metrics,
    runtime,
    storage,
)
from campaigns.abtests import decide as ab_decide
from campaigns.archive import feed_mailings
from campaigns.automations import runs as automations
from campaigns.contacts import export_jobs, imports
from campaigns.draws import drawing as draws
from campaigns.draws import page_entry as draw_page_entry
from campaigns.events import mailings as event_mailings
from campaigns.feedback import engagement
from campaigns.models import Campaign
from campaigns.orders import tiers as loyalty_tiers
from campaigns.post import runs as post_runs
from campaigns.replies import mail as reply_mail_service
from campaigns.reports import summaries
from campaigns.sending import delivery, digest, lifecycle, release, scheduling, sweeper
from campaigns.signup import service as signup
from campaigns.transactional import delivery as transactional
from campaigns.webhooks import delivery as webhook_delivery

logger = logging.getLogger(__name__)


# -- sending -----------------------------------------------------------------------------------------------------

def dispatch_campaign(campaign_id: int) -> int:
    """Create the campaign's send rows and enqueue its batches (resumes from the campaign's cursor)."""
    logger.info("dispatch campaign_id=%s", campaign_id)
    rt = runtime.current()
    key = sweeper.working(rt, sweeper.Work.DISPATCH, campaign_id)
    try:
        return lifecycle.dispatch(rt, campaign_id)
    finally:
        sweeper.done(rt, key)


def send_batch(campaign_id: int, lo: int, hi: int) -> dict:
    """Deliver one batch of a campaign (contacts lo..hi)."""
    rt = runtime.current()
    started = time.monotonic()
    result = delivery.send_batch(rt, campaign_id, lo, hi)
    _record_metrics(rt, campaign_id, result, started)
    return asdict(result)


def send_campaign(campaign_id: int) -> dict:
    """Deliver every due send of a campaign (the sweeper's job: retries, and whatever a lost job left)."""
    rt = runtime.current()
    key = sweeper.working(rt, sweeper.Work.SEND, campaign_id)
    started = time.monotonic()
    try:
        result = delivery.send_batch(rt, campaign_id, *sweeper.WHOLE)
    finally:
        sweeper.done(rt, key)
    _record_metrics(rt, campaign_id, result, started)
    return asdict(result)


def _record_metrics(rt: runtime.Runtime, campaign_id: int, result: delivery.BatchResult, started: float) -> None:
    """Count a batch's outcomes for /metrics (shared through Redis across workers)."""
    relay, kind = _relay_and_kind(rt, campaign_id)
    metrics.record_batch(rt.redis, relay, kind, sent=result.sent, failed=result.failed, deferred=result.deferred,
                         unknown=result.unknown, held_by_rule=result.held_by_rule,
                         seconds=time.monotonic() - started)


def _relay_and_kind(rt: runtime.Runtime, campaign_id: int) -> tuple[str, str]:
    """The campaign's relay name (the default relay's when it names none) and kind, the labels of its metrics."""
    with rt.session_factory() as session:
        row = session.execute(select(Campaign.relay, Campaign.kind).where(Campaign.id == campaign_id)).first()
    relay, kind = row if row is not None else ("", "unknown")
    return relay or rt.settings.relay_names[0], str(kind)


def start_scheduled(campaign_id: int, scheduled_for: str) -> bool:
    """Start a scheduled campaign at its time (enqueued with enqueue_at; the worker's scheduler runs it)."""
    logger.info("scheduled start campaign_id=%s for %s", campaign_id, scheduled_for)
    return scheduling.start_scheduled(runtime.current(), campaign_id, scheduled_for)


def start_due_campaigns() -> int:
    """Start scheduled campaigns whose time has passed (a safety net for lost delayed jobs)."""
    return scheduling.start_due(runtime.current())


def release_held() -> int:
    """Re-queue held sends that may go now and expire old ones."""
    return release.release_held(runtime.current())


def send_digests() -> dict:
    """Send due weekly/monthly readers their digest of held nurture mail."""
    return asdict(digest.run(runtime.current()))


# -- automations and sign-up -------------------------------------------------------------------------------------

def run_automations() -> dict:
    """Send what active automations have due now."""
    return automations.run_due(runtime.current())


def signup_request(request: dict) -> bool:
    """Apply a double opt-in sign-up from a public form and mail its confirmation link when one is due."""
    return signup.handle_request(runtime.current(), request)


def expire_signups() -> int:
    """Expire unconfirmed sign-ups."""
    with runtime.current().session_factory() as session:
        expired = signup.expire_pending(session)
        session.commit()
        return expired


# -- contacts: imports and exports -------------------------------------------------------------------------------

def import_contacts(import_id: str) -> dict:
    """Import one uploaded and mapped CSV file."""
    rt = runtime.current()
    logger.info("import %s", import_id)
    with rt.session_factory() as session:
        return asdict(imports.run_import(session, rt.redis, storage.for_settings(rt.settings), import_id))


def cleanup_import_files(days: int = 7) -> int:
    """Delete import uploads and error reports untouched for `days`."""
    removed = imports.cleanup_imports(runtime.current().settings, dt.timedelta(days=days))
    logger.info("import cleanup: %d files removed", removed)
    return removed


def export_contacts(export_id: str) -> dict:
    """Write one requested contact export to its file."""
    return export_jobs.run(runtime.current(), export_id)


def cleanup_exports() -> int:
    """Delete export files older than Settings.export_keep_hours."""
    removed = export_jobs.cleanup(runtime.current())
    logger.info("export cleanup: %d files removed", removed)
    return removed


# -- feedback and figures ----------------------------------------------------------------------------------------

def drain_hits() -> int:
    """Write queued opens and clicks to the database in bulk."""
    return engagement.drain_hits(runtime.current())


def decay_scores() -> int:
    """Rewrite every contact's engagement score as of now."""
    return engagement.decay_scores(runtime.current())


def reply_mail(reply_ids: list[int] | None = None) -> int:
    """Forward new replies to their owner and send answers written in the admin (these replies, or all due)."""
    return reply_mail_service.send_due(runtime.current(), reply_ids)


def refresh_summary(kind: str, args: list) -> None:
    """Compute one admin summary (dashboard, topic sizes, a report, an audience forecast, post eligibility, the
    cadence report's count, customers per tier) and store it."""
    summaries.refresh(runtime.current(), kind, *args)


# -- post --------------------------------------------------------------------------------------------------------

def render_post(run_id: int) -> dict:
    """Choose and record a print run's letters and write its PDF, label sheet and CSV (progress on the run)."""
    return post_runs.run(runtime.current(), run_id)


# -- outgoing webhooks -------------------------------------------------------------------------------------------

def route_webhooks() -> int:
    """Route outbox events to the endpoints that want them and enqueue the endpoints' deliveries."""
    return webhook_delivery.route(runtime.current())


def deliver_webhooks(endpoint_id: int) -> dict:
    """Post one endpoint's due webhook deliveries (retries included), oldest first."""
    return asdict(webhook_delivery.deliver(runtime.current(), endpoint_id))


# -- RSS-to-email ------------------------------------------------------------------------------------------------

def run_feed_mailings() -> dict:
    """Check the feeds of due feed mailings and mail their new items (campaigns.archive.feed_mailings)."""
    return feed_mailings.run_due(runtime.current())


# -- A/B tests ---------------------------------------------------------------------------------------------------

def decide_ab_tests() -> int:
    """Decide every A/B test whose time has come; the winner (or default) goes to the rest."""
    return ab_decide.decide_due(runtime.current())


# -- loyalty tiers -----------------------------------------------------------------------------------------------

def recompute_tiers(reason: str = "nightly") -> dict:
    """Recompute the loyalty tier of everyone with an order or a tier (nightly, and after the tiers are edited); the
    stored contacts-per-tier summary is dropped, so the page counts them again."""
    rt = runtime.current()
    result = loyalty_tiers.recompute_all(rt, reason=reason)
    summaries.forget(rt, "tiers")
    return result


# -- transactional -----------------------------------------------------------------------------------------------

def send_transactional(tx_id: int) -> str:
    """Deliver one transactional message (its own queue, taken before bulk work)."""
    return transactional.send(runtime.current(), tx_id)


def resume_transactional() -> int:
    """Re-queue transactional messages whose job was lost; settle those a dead worker left sending."""
    return transactional.resume_due(runtime.current())


# -- prize draws -------------------------------------------------------------------------------------------------

def draw_due() -> int:
    """Draw the winners of every prize draw whose entry window has closed (campaigns.draws.drawing)."""
    return draws.draw_due(runtime.current())


def draw_entry_link(draw_id: int, email: str) -> int:
    """Mail a subscriber who asked on a draw's public page their personal entry link (campaigns.draws.page_entry)."""
    return draw_page_entry.send_link(runtime.current(), draw_id, email)


# -- events ------------------------------------------------------------------------------------------------------

def event_mail() -> dict:
    """Send due event reminders and the notes to people the waitlist moved up (campaigns.events.mailings)."""
    return asdict(event_mailings.run(runtime.current()))
