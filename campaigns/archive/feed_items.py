"""A fetched feed's items, made safe to mail: parsed with feedparser, identified by a hash of their guid (else link),
their HTML sanitised with nh3 (never trusted), and given to a run campaign's template as `feed_items`.

The template of a feed mailing loops over `feed_items` in the sandbox:

    {% for item in feed_items %}<a href="{{ item.link }}">{{ item.title }}</a> {{ item.summary }}{% endfor %}

Each item has title, link, summary (sanitised HTML), summary_text, published (a datetime or None) and
published_label ("2 December 2026"). The contributor here gives a run campaign's messages (and its web version) the
items that campaign carries, and every sample render (composer preview, the sample check) three sample items.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import feedparser
import nh3
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.archive.fetching import FeedError
from campaigns.composing.contributions import Contributor, Recipient, SampleContribution, register
from campaigns.models import Campaign, FeedItem
from mailer.tracking import TokenCodec

if TYPE_CHECKING:
    from campaigns.runtime import Runtime

MAX_SUMMARY_CHARS = 20_000       # of an item's HTML before sanitising; nh3 closes what the cut leaves open
MAX_ENTRIES = 500                # items read from one feed (blogs publish 10 to 50); the rest of a huge one is ignored
ALLOWED_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "em", "h3", "h4", "i", "li", "ol", "p", "pre", "q",
                "small", "strong", "sub", "sup", "u", "ul"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}}
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Item:
    """One feed item as stored and mailed."""

    key: str
    title: str
    link: str
    summary_html: str
    published_at: dt.datetime | None


def sanitise(fragment: str) -> str:
    """Item HTML reduced to text formatting and http(s)/mailto links: no scripts, styles, images or forms."""
    return nh3.clean(fragment[:MAX_SUMMARY_CHARS], tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")


def plain(fragment: str) -> str:
    """Text of an HTML fragment (titles), whitespace collapsed."""
    return _SPACES.sub(" ", html.unescape(nh3.clean(fragment, tags=set()))).strip()


def _web_link(value: str) -> str:
    value = (value or "").strip()
    return value if value.lower().startswith(("https://", "http://")) and len(value) <= 2000 else ""


def item_key(guid: str, link: str, text: str) -> str:
    """What makes an item the same item: its guid, else its link, else its title and text (sha256, hex)."""
    identity = f"id:{guid}" if guid else f"link:{link}" if link else f"text:{text}"
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def _published(entry: Mapping[str, Any]) -> dt.datetime | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    try:
        return dt.datetime(*parsed[:6], tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return None


def parse(body: bytes) -> list[Item]:
    """The items of an RSS or Atom document, in the feed's order, duplicates (same key) dropped.

    Raises FeedError when the document is not a feed at all. Never fetches anything itself.
    """
    parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        raise FeedError("the address does not serve an RSS or Atom feed"
                        + (f" ({str(reason)[:200]})" if reason else ""))
    seen: set[str] = set()
    items: list[Item] = []
    for entry in parsed.entries[:MAX_ENTRIES]:
        title = plain(entry.get("title", ""))[:500]
        link = _web_link(entry.get("link", ""))
        content = entry.get("content") or []
        raw = entry.get("summary", "") or (content[0].get("value", "") if content else "")
        key = item_key(str(entry.get("id", "") or "").strip()[:2000], link, f"{title}\n{raw}")
        if key in seen:
            continue
        seen.add(key)
        items.append(Item(key=key, title=title or "(untitled)", link=link, summary_html=sanitise(raw),
                          published_at=_published(entry)))
    return items


class RichText:
    """Sanitised HTML that prints as that HTML in the HTML part and as its text in the plain-text part."""

    __slots__ = ("html", "text")

    def __init__(self, html_fragment: str) -> None:
        self.html = html_fragment
        self.text = plain(html_fragment)

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.text


def template_value(title: str, link: str, summary_html: str, published: dt.datetime | None) -> dict[str, Any]:
    """An item as the template sees it: summary prints the sanitised HTML (marked safe only because it was
    sanitised) in HTML, its text in plain text."""
    return {"title": title, "link": link, "summary": RichText(summary_html), "summary_text": plain(summary_html),
            "published": published, "published_label": f"{published.day} {published:%B %Y}" if published else ""}


def values_of(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """The items a run campaign carries, as template values, in the mail's order."""
    rows = session.execute(select(FeedItem.title, FeedItem.link, FeedItem.summary_html, FeedItem.published_at)
                           .where(FeedItem.campaign_id == campaign_id).order_by(FeedItem.position, FeedItem.id))
    return [template_value(*row) for row in rows]


SAMPLE_ITEMS = (
    ("How we test our seed mixes", "https://example.com/blog/seed-mixes",
     "<p>Every batch is sown on the test bed first. <strong>Here is what we look for.</strong></p>",
     dt.datetime(2026, 3, 2, tzinfo=dt.UTC)),
    ("Five plants for a shady balcony", "https://example.com/blog/shady-balcony",
     "<p>No sun? No problem. Ferns, hostas and three more.</p>", dt.datetime(2026, 2, 20, tzinfo=dt.UTC)),
    ("Our spring workshop dates", "https://example.com/blog/workshops",
     "<p>Pruning, sowing, composting: <a href=\"https://example.com/events\">book a place</a>.</p>",
     dt.datetime(2026, 2, 11, tzinfo=dt.UTC)),
)


class FeedItemsContributor(Contributor):
    """`feed_items` for the messages of a feed mailing's run campaign (nothing for any other campaign)."""

    name = "feed_items"
    order = 20

    def sample(self, session: Session | None, choices: Mapping[str, Any], *, base_url: str,
               tokens: TokenCodec) -> SampleContribution | None:
        return SampleContribution(variables={"feed_items": [template_value(*s) for s in SAMPLE_ITEMS]})

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> Any:
        items = values_of(session, campaign.id)
        return items or None

    def variables(self, state: Any, recipient: Recipient) -> dict[str, Any]:
        return {"feed_items": state}


register(FeedItemsContributor())
