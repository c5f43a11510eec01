"""Held sends: re-queued once the contact policy lets them go, expired once their campaign's deadline has passed
(the periodic `release_held` task, and a range of contacts right after a nurture batch reached them)."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.config import PolicySettings
from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    DigestRun,
    Frequency,
    PolicyLedger,
    Send,
    SendReason,
    SendStatus,
    utcnow,
)
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending.finishing import maybe_finish
from campaigns.sending.policy import DAY, MONTH, WEEK, deadline, hold_reason, load, stats_query

logger = logging.getLogger(__name__)


def expire_held(session: Session, campaign_id: int, reason_text: str) -> int:
    """Mark every held send of the campaign skipped/expired and fix its counters; the caller commits."""
    n = session.execute(
        update(Send).where(Send.campaign_id == campaign_id, Send.status == SendStatus.HELD)
        .values(status=SendStatus.SKIPPED, reason=SendReason.EXPIRED.value, last_error=reason_text)
    ).rowcount or 0
    if n:
        session.execute(update(Campaign).where(Campaign.id == campaign_id)
                        .values(held=Campaign.held - n, skipped=Campaign.skipped + n))
        logger.info("campaign_id=%s: %d held sends expired", campaign_id, n)
    return n


def _release_campaign(session: Session, campaign_id: int, kind: str, policy: PolicySettings, now: dt.datetime,
                      contact_range: tuple[int, int] | None) -> list[int]:
    """Re-queue the campaign's held sends whose contact is eligible now (one UPDATE); returns their contact ids."""
    held_contacts = select(Send.contact_id).where(Send.campaign_id == campaign_id, Send.status == SendStatus.HELD)
    if contact_range is not None:
        held_contacts = held_contacts.where(Send.contact_id.between(*contact_range))
    stats = stats_query(policy, now, held_contacts)
    ready = (select(Send.id).join(Contact, Contact.id == Send.contact_id)
             .outerjoin(stats, stats.c.contact_id == Send.contact_id)
             .where(Send.campaign_id == campaign_id, Send.status == SendStatus.HELD,
                    hold_reason(kind, policy, now, stats).is_(None)))
    if contact_range is not None:
        ready = ready.where(Send.contact_id.between(*contact_range))
    if kind == CampaignKind.NURTURE:
        # A weekly/monthly reader's nurture mail held for that choice waits for their digest (services.digest);
        # a digest itself, and whoever switched back to every mail, are released as usual.
        ready = ready.where(or_(Send.reason != SendReason.PREFERENCE.value,
                                Contact.frequency.not_in([Frequency.WEEKLY.value, Frequency.MONTHLY.value]),
                                exists().where(DigestRun.campaign_id == campaign_id)))
    rows = session.execute(
        # status again in the outer WHERE: a concurrent release that got there first is re-checked, not repeated.
        update(Send).where(Send.id.in_(ready.scalar_subquery()), Send.status == SendStatus.HELD)
        .values(status=SendStatus.QUEUED, reason="", last_error="", next_attempt_at=None)
        .returning(Send.contact_id).execution_options(synchronize_session=False)).all()
    if rows:
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(held=Campaign.held - len(rows)))
    return sorted(r[0] for r in rows)


def release_held(rt: Runtime, *, contact_range: tuple[int, int] | None = None, now: dt.datetime | None = None) -> int:
    """Re-queue held sends whose contacts are eligible now, expire those past their campaign's deadline.

    Meant to run periodically (and, for a range of contacts, right after a nurture batch reached them).
    Returns how many sends were re-queued.
    """
    now = now or utcnow()
    released = 0
    jobs: list[tuple[int, int, int]] = []
    with rt.session_factory() as session:
        policy = load(session, rt.settings.policy)
        has_held = exists().where(Send.campaign_id == Campaign.id, Send.status == SendStatus.HELD)
        candidates = list(session.scalars(select(Campaign).where(
            Campaign.status.in_([CampaignStatus.RUNNING, CampaignStatus.PAUSED]), has_held)))
        session.commit()
        for campaign in candidates:
            end = deadline(campaign, policy)
            if end is not None and end <= now:
                if contact_range is None:
                    expire_held(session, campaign.id, f"expired: the campaign was valid until {end:%Y-%m-%d %H:%M} UTC")
                    maybe_finish(session, campaign.id)
                    session.commit()
                continue
            if campaign.status != CampaignStatus.RUNNING:
                continue
            ids = _release_campaign(session, campaign.id, campaign.kind, policy, now, contact_range)
            session.commit()
            released += len(ids)
            size = rt.settings.batch_size
            jobs += [(campaign.id, ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]
        if contact_range is None:
            prune(session, policy, now)
            session.commit()
    for campaign_id, lo, hi in jobs:
        queueing.enqueue(rt.queue, Job.SEND_BATCH, campaign_id, lo, hi)
    if released:
        logger.info("released %d held sends in %d batch jobs", released, len(jobs))
    return released


def prune(session: Session, policy: PolicySettings, now: dt.datetime) -> int:
    """Delete ledger rows no window looks at any more (the caller commits)."""
    keep = max(dt.timedelta(days=policy.window_days), MONTH, WEEK)
    return session.execute(delete(PolicyLedger).where(PolicyLedger.sent_at < now - keep - DAY)).rowcount or 0
