"""RQ entry points: take ids, use the process runtime, call one service. No Flask, no ORM objects in arguments."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from campaigns import metrics, runtime
from campaigns.sending import delivery, sweeper
from campaigns.sending import lifecycle as sending

logger = logging.getLogger(__name__)


def dispatch_campaign(campaign_id: int) -> int:
    """Create the campaign's send rows and enqueue its batches (resumes from the campaign's cursor)."""
    logger.info("dispatch campaign_id=%s", campaign_id)
    rt = runtime.current()
    key = sweeper.working(rt, "dispatch", campaign_id)
    try:
        return sending.dispatch(rt, campaign_id)
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
    key = sweeper.working(rt, "send", campaign_id)
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
    from sqlalchemy import select

    from campaigns.models import Campaign

    with rt.session_factory() as session:
        row = session.execute(select(Campaign.relay, Campaign.kind).where(Campaign.id == campaign_id)).first()
    relay, kind = row if row is not None else ("", "unknown")
    return relay or rt.settings.relay_names[0], str(kind)


def run_automations() -> dict:
    """Send what active automations have due now (a periodic task, see campaigns.scheduler)."""
    from campaigns.automations import runs as automations

    return automations.run_due(runtime.current())


def release_held() -> int:
    """Re-queue held sends that may go now and expire old ones (a periodic task, see campaigns.scheduler)."""
    from campaigns.sending import policy

    return policy.release_held(runtime.current())


def signup_request(request: dict) -> bool:
    """Apply a double opt-in sign-up from a public form and mail its confirmation link when one is due."""
    from campaigns.signup import service as signup

    return signup.handle_request(runtime.current(), request)


def expire_signups() -> int:
    """Expire unconfirmed sign-ups (run hourly or daily from the scheduler)."""
    from campaigns.signup import service as signup

    with runtime.current().session_factory() as session:
        expired = signup.expire_pending(session)
        session.commit()
        return expired


def send_digests() -> dict:
    """Send due weekly/monthly readers their digest of held nurture mail (a periodic task, see campaigns.scheduler)."""
    from campaigns.sending import digest

    return asdict(digest.run(runtime.current()))
