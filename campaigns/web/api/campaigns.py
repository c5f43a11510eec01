"""API: campaigns — list, read, create a draft, schedule, pause, cancel, stats.

Actions are written to the admin audit log with the actor "api: <key name>", like the admin's own buttons.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from flask import url_for
from pydantic import BaseModel, Field
from sqlalchemy import select

from campaigns.accounts import audit
from campaigns.composing import editor
from campaigns.errors import ValidationError
from campaigns.models import ApiScope, Campaign, CampaignStatus, utcnow
from campaigns.reports.campaign_report import campaign_report
from campaigns.sending import lifecycle, scheduling
from campaigns.web.api.blueprint import bp
from campaigns.web.api.guard import caller
from campaigns.web.api.schemas import Id, Input, PageQuery, decode_cursor, encode_cursor
from campaigns.web.api.spec import API_PREFIX, operation
from campaigns.web.context import db, rt

TAG = "Campaigns"
MAX_AHEAD = dt.timedelta(days=366)


class CampaignOut(BaseModel):
    id: int
    name: str
    kind: str
    status: str
    status_reason: str
    subject: str
    preheader: str
    from_name: str
    from_email: str
    reply_to: str
    language: str
    topic_ids: list[int]
    segment_id: int | None
    all_contacts: bool
    coupon_pool_id: int | None
    survey_id: int | None
    local_time: str = Field(description='Deliver at this time in each reader\'s zone ("HH:MM"); "": all at once')
    local_zone: str = Field(description="The zone of contacts without one")
    local_late: str = Field(description='Where local_time has passed at start: "next_day" or "now"')
    best_time: bool = Field(description="Each reader at their best hour (from their opens and clicks)")
    best_from: int = Field(description="The best-time window's first local hour")
    best_to: int = Field(description="The best-time window's end (exclusive local hour)")
    created_at: dt.datetime
    updated_at: dt.datetime
    scheduled_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    recipients: int
    sent: int
    failed: int
    held: int
    skipped: int


class CampaignPage(BaseModel):
    data: list[CampaignOut]
    next_cursor: str | None


class CampaignQuery(PageQuery):
    status: CampaignStatus | None = None


class CampaignDraft(Input):
    name: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=998)
    mjml: str = Field(min_length=1, max_length=editor.MAX_SOURCE_CHARS, description="The message in MJML")
    kind: Literal["nurture", "marketing"] = "nurture"
    preheader: str = Field(default="", max_length=500)
    text_body: str = Field(default="", max_length=editor.MAX_SOURCE_CHARS, description="Empty: from the HTML")
    from_name: str = Field(default="", max_length=200, description="Empty with from_email: the default sender")
    from_email: str = Field(default="", max_length=320)
    reply_to: str = Field(default="", max_length=320)
    language: str = Field(default="", max_length=35, description="BCP 47, e.g. en or pt-BR; empty: default")
    topic_ids: list[Id] = Field(default_factory=list, max_length=500)
    segment_id: Id | None = None
    all_contacts: bool = False
    coupon_pool_id: Id | None = None
    survey_id: Id | None = None
    local_time: str = Field(default="", pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$",
                            description='Deliver at this time in each reader\'s zone, e.g. "09:00"; "": all at once')
    local_zone: str = Field(default="UTC", max_length=64, description="IANA zone of contacts without one")
    local_late: Literal["next_day", "now"] = Field(default="next_day",
                                                   description="Where local_time has passed at start")
    best_time: bool = Field(default=False, description="Each reader at their best hour within the window "
                                                       "(needs local_time: the fallback)")
    best_from: int = Field(default=8, ge=0, le=23)
    best_to: int = Field(default=20, ge=1, le=24)


class ScheduleIn(Input):
    at: dt.datetime = Field(description="When to start, with a time zone (ISO 8601)")


class CampaignStats(BaseModel):
    campaign_id: int
    status: str
    progress: dict[str, Any] = Field(description="Sent, held, failed, skipped, remaining")
    report: dict[str, Any] = Field(description="Delivered, opens, clicks per link, replies, unsubscribes, "
                                               "bounces, complaints, coupons, ab_test (human and machine "
                                               "engagement apart)")


def campaign_out(c: Campaign) -> CampaignOut:
    return CampaignOut(
        id=c.id, name=c.name, kind=c.kind, status=c.status, status_reason=c.status_reason, subject=c.subject,
        preheader=c.preheader, from_name=c.from_name, from_email=c.from_email, reply_to=c.reply_to,
        language=c.language, topic_ids=sorted(t.id for t in c.topics), segment_id=c.segment_id,
        all_contacts=c.all_contacts, coupon_pool_id=c.coupon_pool_id, survey_id=c.survey_id,
        local_time=c.local_time, local_zone=c.local_zone, local_late=c.local_late, best_time=c.best_time,
        best_from=c.best_from, best_to=c.best_to,
        created_at=c.created_at, updated_at=c.updated_at, scheduled_at=c.scheduled_at, started_at=c.started_at,
        finished_at=c.finished_at, recipients=c.recipients, sent=c.sent, failed=c.failed, held=c.held,
        skipped=c.skipped)


def _audit(action: audit.Action, campaign: Campaign, detail: str = "") -> None:
    session = db()
    audit.record(session, f"api: {caller().name}", action, f"campaign {campaign.id}", detail or campaign.name)
    session.commit()


@operation(bp, "GET", f"{API_PREFIX}/campaigns", tag=TAG, summary="List campaigns", scope=ApiScope.CAMPAIGNS_READ,
           query=CampaignQuery, response=CampaignPage)
def campaign_list(query: CampaignQuery):
    """Newest first."""
    stmt = select(Campaign)
    if query.status is not None:
        stmt = stmt.where(Campaign.status == query.status)
    after = decode_cursor(query.cursor)
    if after is not None:
        stmt = stmt.where(Campaign.id < after)
    rows = list(db().scalars(stmt.order_by(Campaign.id.desc()).limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return CampaignPage(data=[campaign_out(c) for c in rows], next_cursor=encode_cursor(rows[-1].id) if more else None)


@operation(bp, "GET", f"{API_PREFIX}/campaigns/<int:campaign_id>", tag=TAG, summary="Read a campaign",
           scope=ApiScope.CAMPAIGNS_READ, response=CampaignOut)
def campaign_get(campaign_id: int):
    return campaign_out(editor.get_campaign(db(), campaign_id))


@operation(bp, "POST", f"{API_PREFIX}/campaigns", tag=TAG, summary="Create a draft campaign",
           scope=ApiScope.CAMPAIGNS_WRITE, body=CampaignDraft, response=CampaignOut, status=201)
def campaign_create(body: CampaignDraft):
    """A draft, as the admin's editor saves it: template errors are reported when it is scheduled."""
    session = db()
    data: dict[str, Any] = body.model_dump(exclude={"topic_ids", "segment_id", "coupon_pool_id", "survey_id",
                                                    "language"})
    data["sender"] = "custom" if body.from_name or body.from_email else "default"
    data["segment_id"] = str(body.segment_id or "")
    data["coupon_pool_id"] = str(body.coupon_pool_id or "")
    data["survey_id"] = str(body.survey_id or "")
    if body.language:
        data["language"] = body.language
    known = set(rt().settings.relay_names)
    campaign = editor.save_campaign(session, data, topic_ids=body.topic_ids, relay_names=known)
    if len(campaign.topics) != len(set(body.topic_ids)):
        raise ValidationError("one of the topics does not exist", field="topic_ids")
    session.commit()
    return campaign_out(campaign), 201, {"Location": url_for("api.campaign_get", campaign_id=campaign.id)}


@operation(bp, "POST", f"{API_PREFIX}/campaigns/<int:campaign_id>/schedule", tag=TAG, summary="Schedule a draft",
           scope=ApiScope.CAMPAIGNS_WRITE, body=ScheduleIn, response=CampaignOut, errors=(409,))
def campaign_schedule(campaign_id: int, body: ScheduleIn):
    """Checks the template, the audience and compliance now, and starts sending at `at`."""
    session = db()
    campaign = editor.get_campaign(session, campaign_id)
    when = body.at
    if when.tzinfo is None:
        raise ValidationError("give the time with a time zone, e.g. 2026-05-01T09:00:00+02:00", field="at")
    when = when.astimezone(dt.UTC)
    if when < utcnow() - dt.timedelta(minutes=1) or when > utcnow() + MAX_AHEAD:
        raise ValidationError("the time is in the past or more than a year ahead", field="at")
    scheduling.schedule(session, rt(), campaign, when, f"scheduled through the API ({caller().name})")
    _audit(audit.Action.CAMPAIGN_SCHEDULE, campaign, f"{campaign.name}: for {when:%Y-%m-%d %H:%M} UTC")
    return campaign_out(campaign)


@operation(bp, "POST", f"{API_PREFIX}/campaigns/<int:campaign_id>/pause", tag=TAG, summary="Pause a campaign",
           scope=ApiScope.CAMPAIGNS_WRITE, response=CampaignOut, errors=(409,))
def campaign_pause(campaign_id: int):
    """Stops claiming new recipients; resume it in the admin."""
    session = db()
    campaign = editor.get_campaign(session, campaign_id)
    lifecycle.pause(session, campaign, f"paused through the API ({caller().name})")
    _audit(audit.Action.CAMPAIGN_PAUSE, campaign)
    return campaign_out(campaign)


@operation(bp, "POST", f"{API_PREFIX}/campaigns/<int:campaign_id>/cancel", tag=TAG, summary="Cancel a campaign",
           scope=ApiScope.CAMPAIGNS_WRITE, response=CampaignOut, errors=(409,))
def campaign_cancel(campaign_id: int):
    """For good: queued and held recipients are skipped."""
    session = db()
    campaign = editor.get_campaign(session, campaign_id)
    lifecycle.cancel(session, campaign)
    _audit(audit.Action.CAMPAIGN_CANCEL, campaign)
    return campaign_out(campaign)


@operation(bp, "GET", f"{API_PREFIX}/campaigns/<int:campaign_id>/stats", tag=TAG, summary="A campaign's numbers",
           scope=ApiScope.CAMPAIGNS_READ, response=CampaignStats)
def campaign_stats(campaign_id: int):
    session = db()
    campaign = editor.get_campaign(session, campaign_id)
    return CampaignStats(campaign_id=campaign.id, status=campaign.status,
                         progress=dict(lifecycle.progress(session, campaign.id)),
                         report=campaign_report(session, campaign.id))
