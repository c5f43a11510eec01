"""RSS-to-email: a feed mailing checks an external RSS/Atom feed on a schedule and mails its new items.

Every few minutes (queueing.PERIODIC "feed-mailings") the worker checks each active mailing whose time has come:
it fetches the feed (campaigns.archive.fetching: timeout, size limit, conditional GET, no private addresses),
parses it (campaigns.archive.feed_items) and compares the items' keys with those the mailing has seen. New items are
recorded in the same transaction that copies the template into a run campaign and starts it (the dispatch job is
enqueued once that commits; the sweeper re-enqueues it if it is lost), so an item is mailed at most once: a feed
that reorders or repeats items, two checks at once (the unique key makes one of them roll back) or a worker that
dies between fetching and sending never mail an item twice. No new items: no mail. A broken feed or template is
recorded on the mailing (shown in the admin) and nothing is sent.

The run goes through the normal send path: the template's audience, the contact policy, suppression, tracking.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.archive import feed_items, issues
from campaigns.archive.fetching import FeedError, check_url, fetch
from campaigns.db import parse_id
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import Campaign, CampaignKind, CampaignStatus, FeedItem, FeedMailing, utcnow
from campaigns.runtime import Runtime
from campaigns.sending import lifecycle
from mailer.compose import TemplateError

logger = logging.getLogger(__name__)

SCHEDULES = {1: "every hour", 6: "every 6 hours", 24: "every day", 168: "every week", 720: "every 30 days"}
MAX_ITEMS = 50
RETRY_AFTER_ERROR = dt.timedelta(hours=1)     # a failed check is tried again after this (or the schedule if sooner)


def get_mailing(session: Session, mailing_id: int) -> FeedMailing:
    mailing = session.get(FeedMailing, mailing_id)
    if mailing is None:
        raise NotFound(f"feed mailing {mailing_id} not found")
    return mailing


def run_campaign_ids() -> Any:
    """A subquery of the campaigns that are runs of some feed mailing."""
    return select(FeedItem.campaign_id).where(FeedItem.campaign_id.is_not(None))


def template_choices(session: Session, include: int | None = None) -> list[Campaign]:
    """Campaigns a feed mailing may use as its template: drafts that are not themselves feed runs."""
    cond = and_(Campaign.status == CampaignStatus.DRAFT, Campaign.id.not_in(run_campaign_ids()))
    if include:
        cond = or_(cond, Campaign.id == include)
    return list(session.scalars(select(Campaign).where(cond).order_by(Campaign.name)))


def _template(session: Session, raw: Any) -> Campaign:
    campaign = session.get(Campaign, ident) if (ident := parse_id(str(raw or "").strip())) is not None else None
    if campaign is None:
        raise ValidationError("choose the template: a draft campaign that shows {{ feed_items }}", field="template_id")
    if session.scalar(select(exists().where(FeedItem.campaign_id == campaign.id))):
        raise ValidationError(f"“{campaign.name}” was sent by a feed mailing; choose a draft as template",
                              field="template_id")
    if campaign.kind == CampaignKind.TRANSACTIONAL:
        raise ValidationError(f"“{campaign.name}” is transactional; a blog report is nurture (or marketing) mail, "
                              "which the contact policy and unsubscribes govern", field="template_id")
    if not campaign.all_contacts and not campaign.topics and campaign.segment_id is None:
        raise ValidationError(f"the template “{campaign.name}” has no audience: give it topics, a segment or "
                              "“all subscribed contacts”", field="template_id")
    if "feed_items" not in campaign.mjml:
        raise ValidationError(f"the template “{campaign.name}” does not show the items: loop over feed_items "
                              "(start from the “Blog activity report” starter)", field="template_id")
    return campaign


def save_mailing(session: Session, data: Mapping[str, Any], mailing: FeedMailing | None = None) -> FeedMailing:
    """Create or update a feed mailing from form values; raises ValidationError naming the field. Flushes."""
    name = str(data.get("name", "") or "").strip()
    if not name or len(name) > 200:
        raise ValidationError("give the feed mailing a name (at most 200 characters)", field="name")
    clash = session.scalar(select(FeedMailing.id).where(FeedMailing.name == name))
    if clash is not None and (mailing is None or clash != mailing.id):
        raise ValidationError(f"a feed mailing called “{name}” already exists", field="name")
    try:
        url = check_url(str(data.get("feed_url", "") or ""))
    except FeedError as exc:
        raise ValidationError(str(exc), field="feed_url") from None
    raw_every = str(data.get("every_hours", "") or "24").strip()
    if not raw_every.isdigit() or int(raw_every) not in SCHEDULES:
        raise ValidationError("choose how often the feed is checked", field="every_hours")
    raw_max = str(data.get("max_items", "") or "10").strip()
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_ITEMS:
        raise ValidationError(f"items per mail must be a whole number from 1 to {MAX_ITEMS}", field="max_items")
    template = _template(session, data.get("template_id"))
    obj = mailing or FeedMailing(name=name, active=False)
    if obj.feed_url and obj.feed_url != url:
        obj.etag, obj.last_modified = "", ""     # validators belong to the old address
    obj.name, obj.feed_url, obj.template_id = name, url, template.id
    obj.every_hours, obj.max_items = int(raw_every), int(raw_max)
    if obj.id is None:
        session.add(obj)
    session.flush()
    return obj


def set_active(session: Session, mailing: FeedMailing, active: bool) -> None:
    """Switch a mailing on (checked at the next tick) or off. The caller commits."""
    if active and mailing.template_id is None:
        raise ValidationError("choose the template before switching the feed mailing on")
    mailing.active = active
    if active:
        mailing.next_check_at = utcnow()


def delete_mailing(session: Session, mailing: FeedMailing) -> None:
    """Remove a feed mailing and its record of the items it saw; the campaigns it sent stay, with their reports.
    A check under way finds it gone and sends nothing (see check). Flushes; the caller commits."""
    session.execute(delete(FeedItem).where(FeedItem.mailing_id == mailing.id))
    session.delete(mailing)
    session.flush()


def check_soon(session: Session, mailing: FeedMailing) -> None:
    """Have the next tick check the mailing (the admin's "Check now"); the caller commits and enqueues the job."""
    if not mailing.active:
        raise InvalidState("switch the feed mailing on first; a mailing that is off never sends")
    mailing.next_check_at = utcnow()


def runs(session: Session, mailing_id: int, limit: int = 50) -> list[tuple[Campaign, int]]:
    """The mailing's run campaigns, newest first, with how many items each carried."""
    rows = session.execute(select(Campaign, func.count(FeedItem.id)).join(FeedItem, FeedItem.campaign_id == Campaign.id)
                           .where(FeedItem.mailing_id == mailing_id).group_by(Campaign.id)
                           .order_by(Campaign.id.desc()).limit(limit))
    return [(c, n) for c, n in rows]


# ------------------------------------------------------------------ checking

@dataclass
class CheckResult:
    """What one check of one mailing did."""

    mailing_id: int
    new_items: int = 0
    mailed: int = 0
    campaign_id: int | None = None
    not_modified: bool = False
    error: str = ""


def due(session: Session, now: dt.datetime) -> list[int]:
    """Active mailings whose next check has come."""
    return list(session.scalars(select(FeedMailing.id).where(
        FeedMailing.active.is_(True), or_(FeedMailing.next_check_at.is_(None), FeedMailing.next_check_at <= now))
        .order_by(FeedMailing.id)))


def run_due(rt: Runtime, now: dt.datetime | None = None) -> dict[str, int]:
    """Check every due mailing; what was mailed and how many checks failed."""
    now = now or utcnow()
    with rt.session_factory() as session:
        ids = due(session, now)
    out = {"checked": 0, "mailed": 0, "failed": 0}
    for mailing_id in ids:
        try:
            result = check(rt, mailing_id, now)
        except Exception:   # a bug or an outage: logged with its traceback, and the other mailings still checked
            logger.exception("feed mailing %s: the check failed", mailing_id)
            out["checked"] += 1
            out["failed"] += 1
            continue
        out["checked"] += 1
        out["mailed"] += result.mailed
        out["failed"] += bool(result.error)
    return out


def check(rt: Runtime, mailing_id: int, now: dt.datetime | None = None) -> CheckResult:
    """Fetch one mailing's feed and mail its new items (see the module doc). Opens and commits its own sessions."""
    now = now or utcnow()
    result = CheckResult(mailing_id)
    with rt.session_factory() as session:
        mailing = session.get(FeedMailing, mailing_id)
        if mailing is None:     # deleted since the tick listed it
            return result
        url, etag, modified = mailing.feed_url, mailing.etag, mailing.last_modified
    try:
        fetched = fetch(url, etag=etag, last_modified=modified, allow_private=rt.settings.feeds_allow_private)
        items = [] if fetched.not_modified else feed_items.parse(fetched.body)
        result.not_modified = fetched.not_modified
        with rt.session_factory() as session:
            mailing = get_mailing(session, mailing_id)
            _record(rt, session, mailing, items, result)
            mailing.etag, mailing.last_modified = fetched.etag, fetched.last_modified
            _checked(mailing, now, "")
            session.commit()
    except NotFound:
        # Deleted while its feed was fetched: nothing recorded, nothing sent.
        logger.info("feed mailing %s was deleted during its check", mailing_id)
        result.new_items, result.mailed, result.campaign_id = 0, 0, None
    except IntegrityError:
        # Another check of this mailing (the periodic one and "Check now" at once) recorded the same items first,
        # or the mailing was deleted meanwhile: this one sent nothing (its run campaign was rolled back with it).
        logger.info("feed mailing %s: a concurrent check recorded the new items first", mailing_id)
        result.new_items, result.mailed, result.campaign_id = 0, 0, None
    except (FeedError, ValidationError, InvalidState, TemplateError) as exc:
        result.mailed, result.campaign_id = 0, None
        result.error = _reason(exc)
        logger.warning("feed mailing %s: %s", mailing_id, result.error)
        with rt.session_factory() as session:
            mailing = session.get(FeedMailing, mailing_id)
            if mailing is not None:
                _checked(mailing, now, result.error)
                session.commit()
    return result


def _reason(exc: Exception) -> str:
    if isinstance(exc, TemplateError | ValidationError | InvalidState):
        return f"the template cannot be sent: {exc}"
    return str(exc)


def _checked(mailing: FeedMailing, now: dt.datetime, error: str) -> None:
    mailing.last_checked_at = now
    mailing.last_error = error[:2000]
    every = dt.timedelta(hours=mailing.every_hours)
    mailing.next_check_at = now + (min(every, RETRY_AFTER_ERROR) if error else every)


def _record(rt: Runtime, session: Session, mailing: FeedMailing, items: list[feed_items.Item],
            result: CheckResult) -> None:
    """Record the items not seen before and, when there are any, create and start the run carrying the newest
    max_items of them, all in the caller's transaction (the caller commits)."""
    keys = [i.key for i in items]
    seen = set(session.scalars(select(FeedItem.key).where(FeedItem.mailing_id == mailing.id,
                                                          FeedItem.key.in_(keys)))) if keys else set()
    new = [i for i in items if i.key not in seen]
    result.new_items = len(new)
    if not new:
        return
    new.sort(key=lambda i: i.published_at or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)
    mailed, skipped = new[:mailing.max_items], new[mailing.max_items:]
    template = mailing.template
    if template is None:
        raise ValidationError("the template campaign was deleted; choose another")
    run = _copy(template, mailing)
    session.add(run)
    session.flush()
    for position, item in enumerate(mailed):
        session.add(_row(mailing.id, item, position, run.id))
    for item in skipped:     # older than the newest max_items: seen, never mailed later
        session.add(_row(mailing.id, item, mailing.max_items, None))
    session.flush()
    lifecycle.start(session, rt, run)
    result.mailed, result.campaign_id = len(mailed), run.id
    shown = issues.archive_choice(session, template)
    if shown is not None:     # a template in a public archive: each of its mails is an issue there too
        try:
            issues.set_archived(session, rt.settings, run, shown.topic_id)
        except ValidationError as exc:
            logger.warning("feed mailing %s: run %s not archived: %s", mailing.id, run.id, exc)


def _row(mailing_id: int, item: feed_items.Item, position: int, campaign_id: int | None) -> FeedItem:
    return FeedItem(mailing_id=mailing_id, key=item.key, title=item.title, link=item.link,
                    summary_html=item.summary_html, published_at=item.published_at, position=position,
                    campaign_id=campaign_id)


def _copy(template: Campaign, mailing: FeedMailing) -> Campaign:
    copy = Campaign(
        name=f"{mailing.name} · {utcnow():%Y-%m-%d %H:%M}"[:200], kind=template.kind, subject=template.subject,
        preheader=template.preheader, from_name=template.from_name, from_email=template.from_email,
        reply_to=template.reply_to, mjml=template.mjml, text_body=template.text_body, language=template.language,
        all_contacts=template.all_contacts, relay=template.relay, coupon_pool_id=template.coupon_pool_id,
        survey_id=template.survey_id, segment_id=template.segment_id, valid_until=template.valid_until,
        allow_unaligned_from=template.allow_unaligned_from, status=CampaignStatus.DRAFT,
        status_reason=f"sent by the feed mailing “{mailing.name}”")
    copy.topics = list(template.topics)
    return copy
