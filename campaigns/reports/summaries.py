"""Summaries too costly to compute on every page view of a big list, computed by a job and shown with their age.

A page asks for a summary by kind (dashboard, topic sizes, a campaign's report, a campaign's forecast, who of its
audience can get it by post, how many contacts have not heard from us in N days, contacts per loyalty tier). On a
list of up to Settings.live_count_limit contacts it is computed for the view, exact and cheap. On a bigger list the page
shows the figures a worker last stored in Redis with their age ("as of 2 minutes ago"), and asks a worker to refresh
them once they are older than the kind's max age; until the first result exists the page says it is being counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.automations import overview as cadence
from campaigns.composing.editor import get_campaign
from campaigns.contacts import records as contacts
from campaigns.contacts import segments
from campaigns.errors import ValidationError
from campaigns.models import CampaignKind, Contact, ContactStatus, PolicyConfig, PostRun, Segment, Subscription
from campaigns.orders import tiers as loyalty_tiers
from campaigns.post import selection as post_selection
from campaigns.queueing import Job
from campaigns.reports import campaign_report as reports
from campaigns.sending import lifecycle as sending
from campaigns.sending import localtime, outlook, policy

if TYPE_CHECKING:
    from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

KEY = "rapport:summary:{}"
PENDING = "rapport:summary-pending:{}"
KEEP = 7 * 86400          # seconds a stored summary is kept when nobody looks at it
PENDING_FOR = 600         # seconds a requested refresh blocks another request (a lost job is retried after it)


class SummaryKind(StrEnum):
    """What a summary sums up (the first part of its Redis key and of the refresh job's arguments)."""

    SEGMENT = "segment"
    DASHBOARD = "dashboard"
    TOPICS = "topics"
    REPORT = "report"
    AUDIENCE = "audience"
    POST = "post"
    QUIET = "quiet"
    TIERS = "tiers"


@dataclass
class Summary:
    """A summary's value (None while the first one is being computed) and when it was computed."""

    value: Any
    computed_at: dt.datetime | None     # None: computed live for this view
    refreshing: bool = False

    @property
    def live(self) -> bool:
        return self.computed_at is None and self.value is not None

    def age(self, now: dt.datetime | None = None) -> str:
        """How old the figures are, in words ("as of 2 minutes ago"); empty when computed live."""
        if self.computed_at is None:
            return ""
        seconds = max(int(((now or dt.datetime.now(dt.UTC)) - self.computed_at).total_seconds()), 0)
        if seconds < 60:
            return "as of a few seconds ago"
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if seconds >= size:
                n = seconds // size
                return f"as of {n} {unit}{'s' if n != 1 else ''} ago"
        return ""


def _compute_dashboard(rt: Runtime, session: Session) -> dict:
    return {"counts": contacts.count_contacts(session), "charts": reports.dashboard(session)}


def _compute_topics(rt: Runtime, session: Session) -> dict:
    """Subscribers per topic id (as text: the value goes through JSON): contacts still on the list, the people a
    campaign to the topic can reach (one who unsubscribed from all mail keeps their topic rows)."""
    return {str(topic_id): n for topic_id, n in session.execute(
        select(Subscription.topic_id, func.count()).join(Contact, Contact.id == Subscription.contact_id)
        .where(Subscription.subscribed.is_(True), Contact.status == ContactStatus.SUBSCRIBED)
        .group_by(Subscription.topic_id))}


def _compute_report(rt: Runtime, session: Session, campaign_id: int) -> dict:
    report = reports.campaign_report(session, campaign_id)
    return {"report": report, "charts": reports.campaign_charts(session, campaign_id, report=report)}


def _compute_audience(rt: Runtime, session: Session, campaign_id: int) -> dict:
    """The campaign's audience now and, for a draft or scheduled one, the contact policy's forecast for it."""
    campaign = get_campaign(session, campaign_id)
    out: dict[str, Any] = {"fingerprint": audience_fingerprint(session, campaign), "forecast": None}
    if localtime.planned(campaign):    # the local-time schedule: the audience by zone (times follow at display)
        out["zones"] = localtime.zone_counts(session, sending.audience_conditions(campaign))
    if campaign.kind == CampaignKind.TRANSACTIONAL:
        out["audience"] = sending.audience_count(session, campaign)
        return out
    f = outlook.forecast(session, campaign, policy.load(session, rt.settings.policy))
    out["audience"] = f.audience
    out["forecast"] = {"audience": f.audience, "send": f.send, "held": f.held}
    return out


def audience_fingerprint(session: Session, campaign: Any) -> str:
    """What a stored audience figure depends on besides the contacts: the campaign's choices and its segment."""
    segment = session.get(Segment, campaign.segment_id) if campaign.segment_id else None
    saved_policy = session.get(PolicyConfig, 1)
    return json.dumps([campaign.kind, campaign.all_contacts, sorted(t.id for t in campaign.topics),
                       segment.definition if segment else None,
                       str(getattr(saved_policy, "updated_at", "")) if saved_policy else "",
                       bool(getattr(campaign, "local_time", ""))], sort_keys=True,
                      default=str)


def _compute_post(rt: Runtime, session: Session, campaign_id: int) -> dict:
    """Who of a campaign's audience can get it by post (five counts over the audience), with what they depend on."""
    campaign = get_campaign(session, campaign_id)
    return {"fingerprint": post_fingerprint(session, campaign),
            **dataclasses.asdict(post_selection.eligibility(session, campaign))}


def post_fingerprint(session: Session, campaign: Any) -> str:
    """The audience's fingerprint and the campaign's print runs: a new run changes who already got it."""
    runs = session.scalar(select(func.count()).select_from(PostRun).where(PostRun.campaign_id == campaign.id))
    return json.dumps([audience_fingerprint(session, campaign), runs])


def _compute_quiet(rt: Runtime, session: Session, days: int) -> dict:
    """How many subscribed contacts got no mail in `days` days (the cadence report)."""
    return {"count": cadence.quiet_count(session, int(days))}


def _compute_tiers(rt: Runtime, session: Session) -> dict:
    """Contacts per loyalty tier name ("" for none)."""
    return loyalty_tiers.tier_counts(session)


def _compute_segment(rt: Runtime, session: Session, segment_id: int) -> dict:
    """A saved segment's exact size, with the definition it was counted for."""
    segment = segments.get_segment(session, segment_id)
    try:
        return {"count": segments.count(session, segment.definition), "definition": segment.definition}
    except ValidationError as exc:     # saved before a rule changed meaning: the list says why it has no count
        return {"count": None, "error": str(exc), "definition": segment.definition}


COMPUTE: dict[str, Callable[..., Any]] = {
    SummaryKind.SEGMENT: _compute_segment,
    SummaryKind.DASHBOARD: _compute_dashboard,
    SummaryKind.TOPICS: _compute_topics,
    SummaryKind.REPORT: _compute_report,
    SummaryKind.AUDIENCE: _compute_audience,
    SummaryKind.POST: _compute_post,
    SummaryKind.QUIET: _compute_quiet,
    SummaryKind.TIERS: _compute_tiers,
}


def _name(kind: str, args: tuple) -> str:
    return ":".join([kind, *(str(a) for a in args)])


def list_size(session: Session) -> int:
    """An upper bound of the number of contacts, from the primary key (one index probe, never a count)."""
    return session.scalar(select(func.max(Contact.id))) or 0


def is_big(rt: Runtime, session: Session) -> bool:
    """Whether the list is too big for live counts on every view."""
    return list_size(session) > rt.settings.live_count_limit


def get(rt: Runtime, session: Session, kind: str, *args: Any, max_age: float = 300.0) -> Summary:
    """The summary for a page: live on a small list, else the stored one (refreshed in the background when old)."""
    if not is_big(rt, session):
        return Summary(COMPUTE[kind](rt, session, *args), None)
    stored = load(rt, kind, *args)
    if stored is None or (dt.datetime.now(dt.UTC) - stored.computed_at).total_seconds() > max_age:
        request(rt, kind, *args)
        if stored is None:
            return Summary(None, None, refreshing=True)
        stored.refreshing = True
    return stored


def load(rt: Runtime, kind: str, *args: Any) -> Summary | None:
    """The stored summary, or None."""
    raw = rt.redis.get(KEY.format(_name(kind, args)))
    if raw is None:
        return None
    data = json.loads(raw)
    return Summary(data["value"], dt.datetime.fromtimestamp(data["at"], dt.UTC))


def request(rt: Runtime, kind: str, *args: Any) -> bool:
    """Ask a worker to refresh the summary, unless a refresh is already pending; returns whether one was queued."""
    name = _name(kind, args)
    if not rt.redis.set(PENDING.format(name), "1", nx=True, ex=PENDING_FOR):
        return False
    queueing.enqueue(rt.queue, Job.REFRESH_SUMMARY, kind, list(args))
    return True


def refresh(rt: Runtime, kind: str, *args: Any) -> Summary:
    """Compute the summary now and store it (the job's work)."""
    started = time.time()
    try:
        with rt.read_session_factory() as session:
            value = COMPUTE[kind](rt, session, *args)
        rt.redis.set(KEY.format(_name(kind, args)), json.dumps({"at": started, "value": value}), ex=KEEP)
    finally:
        rt.redis.delete(PENDING.format(_name(kind, args)))
    logger.info("summary %s computed in %.1f s", _name(kind, args), time.time() - started)
    return Summary(value, dt.datetime.fromtimestamp(started, dt.UTC))


def forget(rt: Runtime, kind: str, *args: Any) -> None:
    """Drop a stored summary whose inputs changed (a saved campaign's audience), so no stale figure is shown."""
    rt.redis.delete(KEY.format(_name(kind, args)))
