"""API: RSS-to-email feed mailings (read: their feed, schedule, state and last problem) and the public archive of a
campaign (read), docs/archive.md."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field
from sqlalchemy import select

from campaigns.archive import issues
from campaigns.composing import editor
from campaigns.models import ApiScope, FeedMailing
from campaigns.web.api.blueprint import bp
from campaigns.web.api.spec import API_PREFIX, operation
from campaigns.web.context import db, rt

TAG = "Feeds and archive"


class FeedMailingOut(BaseModel):
    id: int
    name: str
    feed_url: str
    template_id: int | None
    every_hours: int = Field(description="How often the feed is checked")
    max_items: int = Field(description="Items per mail at most")
    active: bool
    last_checked_at: dt.datetime | None
    next_check_at: dt.datetime | None
    last_error: str = Field(description="Why the last check sent nothing; empty after a good check")


class FeedMailingList(BaseModel):
    data: list[FeedMailingOut]


class ArchiveOut(BaseModel):
    campaign_id: int
    archived: bool = Field(description="The marketer chose to show it in a topic's public archive")
    shown: bool = Field(description="Archived and sent: the page is public now")
    topic_id: int | None
    url: str | None = Field(description="The issue's public page (once shown)")


@operation(bp, "GET", f"{API_PREFIX}/feed-mailings", tag=TAG, summary="List feed mailings (RSS-to-email)",
           scope=ApiScope.CAMPAIGNS_READ, response=FeedMailingList)
def feed_mailing_list():
    rows = db().scalars(select(FeedMailing).order_by(FeedMailing.id))
    return FeedMailingList(data=[FeedMailingOut(
        id=m.id, name=m.name, feed_url=m.feed_url, template_id=m.template_id, every_hours=m.every_hours,
        max_items=m.max_items, active=m.active, last_checked_at=m.last_checked_at, next_check_at=m.next_check_at,
        last_error=m.last_error) for m in rows])


@operation(bp, "GET", f"{API_PREFIX}/campaigns/<int:campaign_id>/archive", tag=TAG,
           summary="A campaign's place in the public archive", scope=ApiScope.CAMPAIGNS_READ, response=ArchiveOut)
def campaign_archive_get(campaign_id: int):
    session = db()
    campaign = editor.get_campaign(session, campaign_id)
    issue = issues.archive_choice(session, campaign)
    shown = issue is not None and issues.published(campaign)
    url = f"{rt().settings.base_url}/archive/{issues.topic_ref(issue.topic)}/{issue.slug}" if shown else None
    return ArchiveOut(campaign_id=campaign.id, archived=issue is not None, shown=shown,
                      topic_id=issue.topic_id if issue is not None else None, url=url)
