"""Sending: a campaign's audience, starting, pausing, cancelling and finishing it, and dispatch (audience -> send
rows -> batch jobs, also to a fixed list of contacts). The batch jobs themselves — composing, signing, sending and
recording each message, at most once — are campaigns.sending.delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import exists, func, literal, select, update
from sqlalchemy.orm import Session

from campaigns import queueing, webhook_events
from campaigns.composing import editor as campaign_service
from campaigns.config import PolicySettings
from campaigns.contacts.segments import campaign_condition
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import (
    AbPhase,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactStatus,
    Send,
    SendReason,
    SendStatus,
    Subscription,
    campaign_topic,
    utcnow,
)
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending import besttime, localtime, sendrows, sweeper, variants
from campaigns.sending import policy as policy_service
from campaigns.sending.committed import when_committed
from campaigns.sending.finishing import maybe_finish

logger = logging.getLogger(__name__)

DISPATCH_CHUNK = 50_000    # contacts per INSERT … SELECT of dispatch (one statement and one commit each)
UNSENDABLE = (ContactStatus.BOUNCED, ContactStatus.COMPLAINED)


def skip_reason(contact: Contact | None) -> tuple[SendReason, str]:
    """Why a claimed send is skipped: its contact was deleted, suppressed, unsubscribed, or left the topic."""
    if contact is None:
        return SendReason.DELETED, "contact deleted"
    if contact.status in UNSENDABLE:
        return SendReason.SUPPRESSED, f"contact is {contact.status}"
    if contact.status != ContactStatus.SUBSCRIBED:
        return SendReason.UNSUBSCRIBED, f"contact is {contact.status}"
    return SendReason.TOPIC, "unsubscribed from this topic"


# ---------------------------------------------------------------- audience

def audience_conditions(campaign: Campaign, after: int | None = None, upto: int | None = None) -> list:
    """WHERE clauses (on Contact) selecting who a campaign goes to.

    after/upto: the caller selects only contacts with after < id <= upto (a dispatch chunk); the topic EXISTS then
    carries the same range on subscription.contact_id, so PostgreSQL reads only the chunk's subscriptions instead
    of planning a hash aggregate over the whole table for every chunk.
    """
    if campaign.kind == CampaignKind.TRANSACTIONAL:
        conds = [Contact.status.not_in([s.value for s in (*UNSENDABLE, ContactStatus.PENDING)])]
    else:
        conds = [Contact.status == ContactStatus.SUBSCRIBED]
    if not campaign.all_contacts and (campaign.segment_id is None or campaign.topics):
        topic_ids = select(campaign_topic.c.topic_id).where(campaign_topic.c.campaign_id == campaign.id)
        in_range = ([Subscription.contact_id > after] if after is not None else []) + \
            ([Subscription.contact_id <= upto] if upto is not None else [])
        conds.append(exists().where(Subscription.contact_id == Contact.id, *in_range,
                                    Subscription.topic_id.in_(topic_ids),
                                    Subscription.subscribed.is_(True)))
    if campaign.segment_id is not None:   # topics and/or a segment: the segment narrows, evaluated now
        conds.append(campaign_condition(campaign))
    return conds


def audience_count(session: Session, campaign: Campaign) -> int:
    """How many contacts the campaign would go to right now."""
    return session.scalar(select(func.count()).select_from(Contact).where(*audience_conditions(campaign))) or 0


# ---------------------------------------------------------------- state changes

def start(session: Session, rt: Runtime, campaign: Campaign) -> None:
    """Validate, freeze the link table, mark running and enqueue the dispatch job (also resumes a paused one).

    The caller commits; the dispatch job is enqueued once it has (sending.committed).
    """
    if campaign.recipients_listed:
        # An automation's run or a digest mails only the contacts it was given; dispatching would walk an audience.
        if campaign.status != CampaignStatus.PAUSED:
            raise InvalidState("this campaign mails a fixed list of contacts (an automation's run or a digest); "
                               "it is started for them, not from here")
        resume_listed(rt, session, campaign.id)
        return
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED):
        raise InvalidState(f"a {campaign.status} campaign cannot be sent")
    if not campaign.all_contacts and not campaign.topics and campaign.segment_id is None:
        raise ValidationError("choose at least one topic or a segment, or send to all subscribed contacts",
                              field="topics")
    if campaign.valid_until is not None and campaign.valid_until <= utcnow():
        raise ValidationError(f"this campaign was valid until {campaign.valid_until:%Y-%m-%d %H:%M} UTC; "
                              "change or clear that date first", field="valid_until")
    result = campaign_service.validate(campaign)
    variants.check(session, campaign, store_links=True)    # every A/B variant too
    campaign_service.ensure_links(session, campaign, result)
    campaign.content_hash = result.content_hash
    resumed = campaign.status == CampaignStatus.PAUSED
    campaign.status = CampaignStatus.RUNNING
    campaign.status_reason = ""
    webhook_events.record(session, webhook_events.EventType.CAMPAIGN_STARTED,
                          {"campaign": {"id": campaign.id, "name": campaign.name, "kind": str(campaign.kind),
                                        "subject": campaign.subject}, "resumed": resumed})
    campaign.started_at = campaign.started_at or utcnow()
    localtime.settle(session, campaign, utcnow())
    # Walk the audience again (who joined meanwhile gets it too). A statement, not attributes: the session's copy
    # may be stale (dispatch wrote these in its own session), and an unchanged attribute is never written.
    session.execute(update(Campaign).where(Campaign.id == campaign.id).values(dispatched_at=None, dispatch_cursor=0))
    campaign_id = campaign.id

    def enqueue_dispatch() -> None:
        # The marker is only a hint: if this job is lost, the sweeper sees the campaign undispatched and enqueues
        # it again.
        rt.redis.set(sweeper.marker(rt, sweeper.Work.DISPATCH, campaign_id), "queued", ex=sweeper.QUEUED_TTL)
        queueing.enqueue(rt.queue, Job.DISPATCH_CAMPAIGN, campaign_id)
        logger.info("campaign %s started", campaign_id)

    when_committed(session, enqueue_dispatch)


def pause(session: Session, campaign: Campaign, reason: str = "") -> None:
    """Stop claiming new recipients; messages already handed to SMTP stay sent. The caller commits."""
    if campaign.status != CampaignStatus.RUNNING:
        raise InvalidState(f"only a running campaign can be paused (this one is {campaign.status})")
    campaign.status = CampaignStatus.PAUSED
    campaign.status_reason = reason
    session.flush()


def cancel(session: Session, campaign: Campaign) -> None:
    """Cancel for good: queued recipients are marked skipped. The caller commits."""
    if campaign.status in (CampaignStatus.FINISHED, CampaignStatus.CANCELLED):
        raise InvalidState(f"a {campaign.status} campaign cannot be cancelled")
    campaign.status = CampaignStatus.CANCELLED
    campaign.finished_at = utcnow()
    skipped = session.execute(
        update(Send).where(Send.campaign_id == campaign.id, Send.status == SendStatus.QUEUED)
        .values(status=SendStatus.SKIPPED, last_error="campaign cancelled")
    ).rowcount
    held = session.execute(
        update(Send).where(Send.campaign_id == campaign.id, Send.status == SendStatus.HELD)
        .values(status=SendStatus.SKIPPED, last_error="campaign cancelled while held")
    ).rowcount
    campaign.skipped += (skipped or 0) + (held or 0)
    campaign.held -= held or 0
    session.flush()


# ---------------------------------------------------------------- dispatch

def dispatch(rt: Runtime, campaign_id: int) -> int:
    """Walk the audience in contact-id chunks, insert their send rows with one INSERT … SELECT per chunk and
    enqueue batch jobs over them; the cursor after each chunk is committed with it, so a killed dispatch resumes
    where it stopped (the sweeper enqueues it again). Returns how many send rows it created."""
    created = 0
    with rt.session_factory() as session:
        campaign = campaign_service.get_campaign(session, campaign_id)
        if campaign.status != CampaignStatus.RUNNING:
            logger.info("campaign %s is %s: nothing to dispatch", campaign_id, campaign.status)
            return 0
        if campaign.dispatched_at is not None:
            return 0
        last = campaign.dispatch_cursor or 0
        resumed = campaign.recipients > 0   # rows of an earlier walk (a resume) wait too, in no new job's range
        now = utcnow()    # local-time campaigns: every zone's time is the next one after this (sending.localtime)
        default_zone = campaign.local_zone
        prior = besttime.list_prior(session, now, lambda name: localtime.contact_zone(name, default_zone)) \
            if localtime.planned(campaign) and campaign.best_time else None
        # An A/B test: its test share first (each send with its variant), then the rest with the winner; while a
        # person decides (DECIDED) nobody new is added.
        test = variants.test_of(session, campaign_id)
        phase = test.phase if test is not None else None
        rest = variants.rest_variant(test)
        session.commit()
        while phase != AbPhase.DECIDED:
            hi = chunk_end(session, campaign, last)
            if hi is None:
                break
            chunk = [Contact.id > last, Contact.id <= hi, *audience_conditions(campaign, last, hi)]
            due = localtime.due_expression(session, campaign, now, chunk)
            rows = select(literal(campaign_id), Contact.id, literal(SendStatus.QUEUED.value), literal(0),
                          literal(""), literal(utcnow()), due, due,
                          *([literal(rest)] if rest is not None else [])).where(*chunk)
            if phase == AbPhase.TEST:   # an A/B test is never a local-time campaign (abtests.setup refuses it)
                sendrows.for_new_rows(session)
                inserted = variants.insert_test_share(session, campaign_id, test, variants.audience_ids(
                    session, audience_conditions(campaign, last, hi), last, hi))
            else:
                inserted = sendrows.insert(session, rows, scheduled=True, with_variant=rest is not None,
                                           fresh_range=(campaign_id, last, hi))
                localtime.apply_best_times(session, campaign, now, last, hi, prior)
            # One UPDATE: the cursor and the count move with the rows, in the same transaction.
            session.execute(update(Campaign).where(Campaign.id == campaign_id)
                            .values(recipients=Campaign.recipients + inserted, dispatch_cursor=hi))
            session.commit()
            created += inserted
            _enqueue_batches(rt, campaign_id, last + 1, hi, inserted)
            last = hi
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(dispatched_at=utcnow()))
        session.commit()
        if resumed:
            sweeper.ensure_job(rt, sweeper.Work.SEND, campaign_id)
        maybe_finish(session, campaign_id)
        session.commit()
    logger.info("campaign %s dispatched: %d new send rows", campaign_id, created)
    return created


def chunk_end(session: Session, campaign: Campaign, last: int) -> int | None:
    """The last contact id of the dispatch chunk after `last` (None: no contact left).

    A walk of the primary key alone (no rows fetched, no audience test), so a chunk spans DISPATCH_CHUNK contacts of
    whom the audience is some. With the audience's conditions in this walk PostgreSQL joined every remaining
    subscription for each chunk: 2 s a chunk at 1,000,000 contacts (bench/dispatch.py, phase `audience_walk`).
    """
    return session.scalar(select(func.max(select(Contact.id).where(Contact.id > last)
                                          .order_by(Contact.id).limit(DISPATCH_CHUNK).subquery().c.id)))


def _enqueue_batches(rt: Runtime, campaign_id: int, lo: int, hi: int, rows: int) -> None:
    """Split contact ids lo..hi into about rows / batch_size equal ranges, one batch job each (in one pipeline).

    Ranges split the id space, not the rows: a sparse range just makes a shorter job. Rows a job misses (none
    should) are still claimed by the sweeper's campaign-wide job.
    """
    if rows <= 0:
        return
    parts = max(1, -(-rows // rt.settings.batch_size))
    step = -(-(hi - lo + 1) // parts)
    batches = [(campaign_id, start_id, min(start_id + step - 1, hi)) for start_id in range(lo, hi + 1, step)]
    queueing.enqueue_many(rt.queue, Job.SEND_BATCH, batches)


PROGRESS_EXACT = 5000      # send rows a progress poll counts one by one (index only); beyond, the counters answer


def _count_upto(session: Session, campaign_id: int, statuses: tuple[SendStatus, ...], *conds) -> int:
    """Send rows of the campaign in these statuses, counted up to PROGRESS_EXACT (a bounded index-only scan)."""
    rows = (select(Send.contact_id).where(Send.campaign_id == campaign_id, Send.status.in_(statuses), *conds)
            .limit(PROGRESS_EXACT).subquery())
    return session.scalar(select(func.count()).select_from(rows)) or 0


def progress(session: Session, campaign_id: int, policy: PolicySettings | None = None) -> dict[str, int | str]:
    """Live counters for the progress bar, and what a running campaign with nothing left to send waits for."""
    c = campaign_service.get_campaign(session, campaign_id)
    remaining = _count_upto(session, campaign_id, (SendStatus.QUEUED, SendStatus.SENDING))
    if remaining == PROGRESS_EXACT:
        # Many left: the campaign's counters (kept with every batch) say how many, never fewer than were seen.
        remaining = max(remaining, c.recipients - c.sent - c.failed - c.skipped - c.held)
    held_now = _count_upto(session, campaign_id, (SendStatus.HELD,))
    if held_now == PROGRESS_EXACT:
        held_now = max(held_now, c.held)
    unknown = _count_upto(session, campaign_id, (SendStatus.UNKNOWN,))
    now = utcnow()
    local = bool(c.local_time) and not c.recipients_listed
    local_waiting, local_next = localtime.waiting(session, campaign_id, now, PROGRESS_EXACT, remaining) \
        if local and c.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED) else (0, None)
    if not remaining or c.dispatched_at is None:
        retrying = 0
    elif local:
        retrying = localtime.retrying(session, campaign_id, now, PROGRESS_EXACT)
    else:
        retrying = _count_upto(session, campaign_id, (SendStatus.QUEUED,), Send.next_attempt_at > now)
    waiting = ""
    if c.status == CampaignStatus.RUNNING and local_waiting:
        waiting = (f"Waiting for local time: {local_waiting} recipient{'s' if local_waiting != 1 else ''}, next at "
                   f"{local_next:%Y-%m-%d %H:%M} UTC. The campaign finishes after the last zone.")
    elif c.status == CampaignStatus.RUNNING and c.dispatched_at is not None and not remaining and held_now:
        until = policy_service.deadline(c, policy) if policy is not None else None
        waiting = (f"Everyone who may get it now has it. {held_now} recipient{'s are' if held_now != 1 else ' is'} "
                   "held by the contact policy and retried as their nurture mail allows"
                   + (f", until {until:%Y-%m-%d %H:%M} UTC" if until else "")
                   + "; the campaign finishes then. Cancel it to stop waiting.")
    if c.status == CampaignStatus.RUNNING and c.dispatched_at is not None and not remaining and not waiting:
        waiting = variants.waiting(session, c)
    return {"status": str(c.status), "reason": c.status_reason, "recipients": c.recipients, "sent": c.sent,
            "failed": c.failed, "held": c.held, "skipped": c.skipped, "remaining": remaining,
            "held_now": held_now, "waiting": waiting, "unknown": unknown, "retrying": retrying,
            "local_waiting": local_waiting, "local_next": local_next.isoformat() if local_next else None}


def resend_unknown(rt: Runtime, session: Session, campaign: Campaign) -> int:
    """Queue the campaign's sends of unknown outcome again (a person chose to); returns how many.

    They keep their send id and so their Message-ID: a receiver that de-duplicates drops the second copy.
    A finished campaign runs again until they are settled. The caller commits; the job follows its commit.
    """
    if campaign.status in (CampaignStatus.CANCELLED, CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        raise InvalidState(f"a {campaign.status} campaign sends nothing")
    ids = [r[0] for r in session.execute(
        update(Send).where(Send.campaign_id == campaign.id, Send.status == SendStatus.UNKNOWN)
        .values(status=SendStatus.QUEUED, next_attempt_at=None, claimed_by=None, lease_until=None,
                last_error="outcome was unknown; resent on request with the same Message-ID")
        .returning(Send.id).execution_options(synchronize_session=False))]
    n = len(ids)
    policy_service.unreserve(session, ids)   # the claim reserves them again
    status = campaign.status
    if n and status == CampaignStatus.FINISHED:
        session.execute(update(Campaign).where(Campaign.id == campaign.id, Campaign.status == CampaignStatus.FINISHED)
                        .values(status=CampaignStatus.RUNNING, finished_at=None))
    if n and status in (CampaignStatus.RUNNING, CampaignStatus.FINISHED):
        campaign_id = campaign.id
        when_committed(session, lambda: sweeper.ensure_job(rt, sweeper.Work.SEND, campaign_id))
    logger.info("campaign %s: %d sends of unknown outcome queued again", campaign.id, n)
    return n



# ---------------------------------------------------------------- dispatch to a fixed list (automations, personal mail)

def dispatch_to(rt: Runtime, campaign_id: int, contact_ids: Sequence[int]) -> int:
    """Queue the campaign for exactly these contacts and enqueue their batch jobs; returns new send rows.

    Send rows are inserted ON CONFLICT DO NOTHING, so calling it again (a retried tick, a repair) never gives a
    contact the campaign twice. A draft is validated and started, a finished campaign runs again for the newcomers;
    a paused one keeps the rows for when it resumes, a cancelled one takes nobody. Eligibility (status, topics,
    suppression) and the sending policy are checked at send time by send_batch, as for any campaign.
    """
    ids = sorted({int(c) for c in contact_ids})
    if not ids:
        return 0
    created = 0
    with rt.session_factory() as session:
        campaign = campaign_service.get_campaign(session, campaign_id)
        if campaign.status == CampaignStatus.CANCELLED:
            logger.info("campaign %s is cancelled: nobody added", campaign_id)
            return 0
        if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            result = campaign_service.validate(campaign)
            campaign_service.ensure_links(session, campaign, result)
            campaign.content_hash = result.content_hash
            campaign.status = CampaignStatus.RUNNING
            campaign.status_reason = ""
            campaign.started_at = campaign.started_at or utcnow()
            campaign.dispatched_at = campaign.dispatched_at or utcnow()   # the list is the audience: nothing to walk
        campaign.recipients_listed = True
        session.commit()
        page = rt.settings.batch_size
        for i in range(0, len(ids), page):
            chunk = ids[i:i + page]
            rows = select(literal(campaign_id), Contact.id, literal(SendStatus.QUEUED.value), literal(0),
                          literal(""), literal(utcnow())).where(Contact.id.in_(chunk))
            inserted = sendrows.insert(session, rows)
            if not inserted:
                session.commit()
                continue
            # A finished campaign runs again for the newcomers (one UPDATE: no window for maybe_finish).
            running = session.execute(
                update(Campaign).where(Campaign.id == campaign_id,
                                       Campaign.status.in_([CampaignStatus.RUNNING, CampaignStatus.FINISHED]))
                .values(status=CampaignStatus.RUNNING, finished_at=None,
                        recipients=Campaign.recipients + inserted)).rowcount
            if not running:
                session.execute(update(Campaign).where(Campaign.id == campaign_id)
                                .values(recipients=Campaign.recipients + inserted))
            session.commit()
            created += inserted
            if running:
                queueing.enqueue(rt.queue, Job.SEND_BATCH, campaign_id, chunk[0], chunk[-1])
        maybe_finish(session, campaign_id)
        session.commit()
    logger.info("campaign %s: %d send rows for a list of %d contacts", campaign_id, created, len(ids))
    return created


def resume_listed(rt: Runtime, session: Session, campaign_id: int) -> int:
    """Resume a paused campaign of listed recipients (see dispatch_to) over its own queued send rows only.

    Returns how many sends wait to go again. The caller commits; the batch job follows its commit.
    """
    lo, hi, n = session.execute(select(func.min(Send.contact_id), func.max(Send.contact_id), func.count())
                                .where(Send.campaign_id == campaign_id, Send.status == SendStatus.QUEUED)).one()
    session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.PAUSED)
                    .values(status=CampaignStatus.RUNNING, status_reason=""))
    if n:
        when_committed(session, lambda: queueing.enqueue(rt.queue, Job.SEND_BATCH, campaign_id, lo, hi))
    else:
        maybe_finish(session, campaign_id)
    logger.info("campaign %s resumed for its listed recipients: %d queued sends", campaign_id, n)
    return n
