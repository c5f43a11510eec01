"""The sweeper: what keeps every running campaign moving without a person. The database is the only truth.

Run every few seconds by the elected scheduler (campaigns.scheduler.Ticker; one process per slot), it
(a) settles claims whose lease ran out (campaigns.sending.claims.recover), (b) makes sure every running campaign
with due queued rows has a job that claims them — deferred rows at their next attempt time, rows of a lost or
failed job, a queue emptied by a Redis restart — (c) resumes an interrupted dispatch from its cursor, (d) finishes
campaigns with nothing left, and trims the stop list. Jobs are marked in Redis while queued or running (a key the
working process keeps alive), so the sweeper adds one only when none is there; an extra one is harmless, as claims
are exclusive across workers.
"""

from __future__ import annotations

import datetime as dt
import logging
from enum import StrEnum

from redis.exceptions import RedisError
from sqlalchemy import exists, or_, select

from campaigns import queueing, stops
from campaigns.models import Campaign, CampaignStatus, Send, SendStatus, utcnow
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending import claims, localtime
from campaigns.sending.finishing import maybe_finish

logger = logging.getLogger(__name__)

QUEUED_TTL = 120     # seconds a job's marker lives while the job waits in the queue
RUNNING_TTL = 60     # … and, refreshed by the heartbeat, while it runs (a killed job's marker is gone within this)
WHOLE = (0, 2**62)   # the contact range of a campaign-wide batch


class Work(StrEnum):
    """A campaign's job the sweeper keeps alive (the middle part of its marker's Redis key)."""

    SEND = "send"
    DISPATCH = "dispatch"


def marker(rt: Runtime, what: Work, campaign_id: int) -> str:
    return f"rapport:{rt.settings.queue_name}:{what}:{campaign_id}"


def ensure_job(rt: Runtime, what: Work, campaign_id: int) -> bool:
    """Enqueue the campaign's `send` or `dispatch` job unless one is marked as queued or running (by a process
    that still exists: a job of a worker that died on this machine does not wait for its marker to expire)."""
    key = marker(rt, what, campaign_id)
    if not rt.redis.set(key, "queued", nx=True, ex=QUEUED_TTL):
        holder = rt.redis.get(key)
        if not (holder and claims.owner_gone(holder.decode())) or not rt.redis.delete(key) \
                or not rt.redis.set(key, "queued", nx=True, ex=QUEUED_TTL):
            return False
    if what == Work.DISPATCH:
        queueing.enqueue(rt.queue, Job.DISPATCH_CAMPAIGN, campaign_id)
    else:
        queueing.enqueue(rt.queue, Job.SEND_CAMPAIGN, campaign_id)
    return True


def working(rt: Runtime, what: Work, campaign_id: int) -> str:
    """Mark the campaign's job as running (kept alive by this process's heartbeat); returns the key for done()."""
    key = marker(rt, what, campaign_id)
    lessee = claims.lessee(rt)
    try:
        rt.redis.set(key, lessee.owner, ex=RUNNING_TTL)   # who runs it (see ensure_job)
    except RedisError:
        pass
    lessee.keep_alive(key, RUNNING_TTL)
    return key


def done(rt: Runtime, key: str) -> None:
    """The job ended: the next sweep may enqueue another if work is due."""
    claims.lessee(rt).drop(key)


def sweep(rt: Runtime, now: dt.datetime | None = None) -> dict[str, int]:
    """One pass over running (and paused) campaigns; returns what it did, for logs and tests."""
    now = now or utcnow()
    did = {"requeued": 0, "unknown": 0, "dispatch": 0, "send": 0, "finished": 0}
    stops.trim(rt.redis, rt.settings.queue_name)
    due = or_(Send.next_attempt_at.is_(None), Send.next_attempt_at <= now)
    with rt.session_factory() as session:
        campaigns = session.execute(
            select(Campaign.id, Campaign.status, Campaign.dispatched_at,
                   (Campaign.local_time != "") & ~Campaign.recipients_listed)
            .where(Campaign.status.in_([CampaignStatus.RUNNING, CampaignStatus.PAUSED]))).all()
        session.commit()
        for campaign_id, status, dispatched_at, local in campaigns:
            requeued, unknown = claims.recover(rt, campaign_id, now)
            did["requeued"] += requeued
            did["unknown"] += unknown
            if status != CampaignStatus.RUNNING:
                continue
            if dispatched_at is None:
                did["dispatch"] += ensure_job(rt, Work.DISPATCH, campaign_id)
            # A local-time campaign asks its small index (rows waiting for a later zone are not scanned).
            has_due = session.scalar(select(localtime.due_rows(campaign_id, now) if local else exists().where(
                Send.campaign_id == campaign_id, Send.status == SendStatus.QUEUED, due)))
            session.commit()
            if has_due:
                did["send"] += ensure_job(rt, Work.SEND, campaign_id)
            elif dispatched_at is not None:
                did["finished"] += maybe_finish(session, campaign_id)
                session.commit()
    if any(did.values()):
        logger.info("sweep: %s", did)
    return did
