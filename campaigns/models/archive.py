"""The public archive (campaigns chosen to be shown per topic) and RSS-to-email (feed mailings and the feed items
each one has seen, so an item is never mailed twice)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow
from campaigns.models.contacts import Topic
from campaigns.models.core import Campaign

__all__ = ["ArchivedIssue", "FeedItem", "FeedMailing"]


class ArchivedIssue(Base):
    """A campaign shown in one topic's public archive (/archive/<topic>/<slug>), once it has been sent.

    The slug is chosen when the campaign is archived and never changes, so an issue's address stays valid.
    """

    __tablename__ = "archived_issue"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topic.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(120))
    archived_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    campaign: Mapped[Campaign] = relationship()
    topic: Mapped[Topic] = relationship()

    __table_args__ = (UniqueConstraint("topic_id", "slug"),)


class FeedMailing(Base):
    """RSS-to-email: a template campaign mailed with the new items of an external RSS/Atom feed.

    The worker checks the feed every `every_hours` while the mailing is active (campaigns.archive.feed_mailings);
    a check that finds new items copies the template into a run campaign and sends it to the template's audience.
    """

    __tablename__ = "feed_mailing"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    feed_url: Mapped[str] = mapped_column(Text)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    every_hours: Mapped[int] = mapped_column(Integer, default=24)
    max_items: Mapped[int] = mapped_column(Integer, default=10)   # items per mail; older new items are skipped
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The feed's validators from the last answer, sent back as If-None-Match / If-Modified-Since.
    etag: Mapped[str] = mapped_column(String(500), default="", server_default="")
    last_modified: Mapped[str] = mapped_column(String(100), default="", server_default="")
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")   # "" after a good check
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    template: Mapped[Campaign | None] = relationship()


class FeedItem(Base):
    """An item of a mailing's feed, recorded the first time a check sees it: in the same transaction that creates
    the run campaign carrying it, so an item is mailed at most once whatever the feed or the worker does."""

    __tablename__ = "feed_item"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailing_id: Mapped[int] = mapped_column(ForeignKey("feed_mailing.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))      # sha256 of the item's guid (else its link, else its text)
    title: Mapped[str] = mapped_column(String(500), default="")
    link: Mapped[str] = mapped_column(Text, default="")
    summary_html: Mapped[str] = mapped_column(Text, default="")    # sanitised (nh3) when stored
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    position: Mapped[int] = mapped_column(Integer, default=0)      # order in the mail (the feed's order)
    # The run campaign that mailed it; None: seen but not mailed (beyond max_items in one check).
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"), index=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("mailing_id", "key"),)
