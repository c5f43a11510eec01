"""Scheduled campaigns: pick a local time in a time zone, start at that moment (RQ enqueue_at), unschedule.

The database stays the state machine: a campaign is `scheduled` with `scheduled_at`; the delayed job carries the
time it was scheduled for, so a job of an older schedule (rescheduled or unscheduled since) does nothing.
start_due() starts any scheduled campaign whose time has passed, for a periodic safety net should Redis lose a job.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.accounts import alignment
from campaigns.composing import editor as campaign_service
from campaigns.errors import InvalidState, RapportError, ValidationError
from campaigns.models import Campaign, CampaignStatus, utcnow
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending import delivery, variants
from campaigns.sending import lifecycle as sending
from campaigns.sending.committed import when_committed
from mailer.compose import TemplateError

logger = logging.getLogger(__name__)

MAX_AHEAD = dt.timedelta(days=366)


@cache
def timezones() -> list[str]:
    """IANA time zone names for the schedule form, sorted."""
    return sorted(z for z in available_timezones() if "/" in z or z == "UTC")


def parse_local_time(value: str, tz_name: str, now: dt.datetime | None = None) -> dt.datetime:
    """A wall-clock time ('2026-03-05T09:30') in tz_name as an aware UTC datetime; clear errors otherwise."""
    try:
        tz = ZoneInfo(tz_name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {tz_name[:60]!r}; pick one from the list", field="timezone") from None
    try:
        local = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError("enter the date and time as YYYY-MM-DD HH:MM", field="when") from None
    if local.tzinfo is not None:
        local = local.replace(tzinfo=None)
    aware = local.replace(tzinfo=tz)
    # A wall-clock time skipped by a DST change does not exist; don't silently shift it by an hour.
    roundtrip = aware.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
    if roundtrip != local:
        raise ValidationError(f"{local:%Y-%m-%d %H:%M} does not exist in {tz_name} (the clocks skip it); "
                              "choose another time", field="when")
    when = aware.astimezone(dt.UTC)
    now = now or utcnow()
    if when <= now + dt.timedelta(seconds=30):
        raise ValidationError(f"{local:%Y-%m-%d %H:%M} {tz_name} is in the past; use Send now instead",
                              field="when")
    if when > now + MAX_AHEAD:
        raise ValidationError("schedule at most a year ahead", field="when")
    return when


def schedule(session: Session, rt: Runtime, campaign: Campaign, when: dt.datetime, label: str = "") -> None:
    """Validate now (so errors show today, not at send time) and start the campaign at `when` (UTC). The caller
    commits; the delayed job is enqueued once it has."""
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        raise InvalidState(f"a {campaign.status} campaign cannot be scheduled")
    if not campaign.all_contacts and not campaign.topics and getattr(campaign, "segment_id", None) is None:
        raise ValidationError("choose an audience (topics, a segment or all contacts) before scheduling",
                              field="topics")
    ready_to_send(session, rt, campaign)
    campaign.status = CampaignStatus.SCHEDULED
    campaign.scheduled_at = when
    campaign.status_reason = label
    session.flush()
    campaign_id = campaign.id

    def enqueue_start() -> None:
        queueing.enqueue_at(rt.queue, when, Job.START_SCHEDULED, campaign_id, when.isoformat())
        logger.info("campaign %s scheduled for %s UTC", campaign_id, when.isoformat())

    when_committed(session, enqueue_start)


def unschedule(session: Session, campaign: Campaign) -> None:
    """Back to draft; the pending job finds the campaign no longer scheduled and does nothing. The caller commits."""
    if campaign.status != CampaignStatus.SCHEDULED:
        raise InvalidState(f"only a scheduled campaign can be unscheduled (this one is {campaign.status})")
    campaign.status = CampaignStatus.DRAFT
    campaign.scheduled_at = None
    campaign.status_reason = ""
    session.flush()


def ready_to_send(session: Session, rt: Runtime, campaign: Campaign) -> None:
    """Raise ValidationError when the campaign cannot go out: template errors (with line) or compliance."""
    campaign_service.validate(campaign)
    campaign_service.check_base_url(campaign, rt.settings)
    alignment.check_campaign_from(session, campaign, rt.settings)
    variants.check_senders(session, campaign, rt.settings)    # an A/B variant's own From, too
    try:
        delivery.CampaignMailer.for_campaign(rt, session, campaign)
    except TemplateError as exc:
        raise ValidationError(str(exc), field="mjml") from None


def start_scheduled(rt: Runtime, campaign_id: int, scheduled_for: str) -> bool:
    """The delayed job: start the campaign if it is still scheduled for that time; returns whether it started."""
    with rt.session_factory() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status != CampaignStatus.SCHEDULED or campaign.scheduled_at is None:
            logger.info("campaign %s: no longer scheduled, nothing to start", campaign_id)
            return False
        if campaign.scheduled_at != dt.datetime.fromisoformat(scheduled_for):
            logger.info("campaign %s: rescheduled since this job was made", campaign_id)
            return False
        started = _start(session, rt, campaign)
        session.commit()
        return started


def start_due(rt: Runtime, now: dt.datetime | None = None) -> int:
    """Start every scheduled campaign whose time has come (periodic safety net); returns how many started."""
    started = 0
    with rt.session_factory() as session:
        due = list(session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SCHEDULED,
                                                          Campaign.scheduled_at <= (now or utcnow()))))
        for campaign in due:
            started += _start(session, rt, campaign)
            session.commit()
    return started


def _start(session: Session, rt: Runtime, campaign: Campaign) -> bool:
    """Start a scheduled campaign, or put it back to draft with the reason; the caller commits either."""
    try:
        ready_to_send(session, rt, campaign)
        sending.start(session, rt, campaign)
    except RapportError as exc:
        # Never send something broken on a timer: back to draft, with the reason on the campaign page.
        session.rollback()
        campaign.status = CampaignStatus.DRAFT
        campaign.status_reason = f"the scheduled start failed: {exc}"
        logger.warning("campaign %s: scheduled start failed: %s", campaign.id, exc)
        return False
    logger.info("campaign %s started on schedule", campaign.id)
    return True
