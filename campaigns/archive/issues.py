"""The public archive: campaigns a marketer chose to show, per topic, once they have been sent, rendered for nobody.

An archived issue is rendered for a neutral contact (no name, no address), with no contributor's values (no coupon
code, no survey link), no tracking pixel, untracked links and no unsubscribe or preference token: nothing in it
belongs to a recipient. Only a feed mailing's items (campaigns.archive.feed_items) are added, as they are the
content itself. Addresses: /archive/<topic id>-<topic name>/ lists a topic's issues, /archive/<…>/<slug> shows
one (the slug is fixed when the campaign is archived), /archive/<…>/feed.atom is its Atom feed.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.accounts.alignment import FROM_OWNER
from campaigns.accounts.settings_store import postal_address
from campaigns.archive import feed_items
from campaigns.composing import contributions, sample
from campaigns.composing.editor import compiled, sender_context, source_of
from campaigns.config import Settings
from campaigns.errors import NotFound, ValidationError
from campaigns.models import (
    ArchivedIssue,
    Campaign,
    CampaignKind,
    CampaignStatus,
    SignupForm,
    Topic,
    signup_form_topic,
    utcnow,
)
from mailer.compose import Rendered, TemplateError

NEUTRAL_CONTACT = {"email": "", "first_name": "", "last_name": "", "full_name": "", "city": "", "country": "",
                   "interests": []}
SENT_STATUSES = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.FINISHED, CampaignStatus.CANCELLED)
FEED_LENGTH = 20
_HEADLINES = 4096
_headlines: OrderedDict[tuple[int, str, str, str], tuple[str, str] | None] = OrderedDict()
_PIXEL = re.compile(r'<img src="" width="1" height="1" alt=""[^>]*>')
# The unsubscribe and preference links point here in a neutral render; the archive drops them (and a separator
# next to them): an archive reader has nothing to unsubscribe from.
RECIPIENT_LINK = "https://recipient-link.invalid/"
_SEP = r"(?:\s*(?:·|&middot;|&#183;|&#xb7;|\|)\s*)"
_LINK = r'<a\b[^>]*href="' + re.escape(RECIPIENT_LINK) + r'"[^>]*>.*?</a>'
_RECIPIENT_LINKS = re.compile(f"{_SEP}{_LINK}|{_LINK}{_SEP}?", re.IGNORECASE | re.DOTALL)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, limit: int = 80) -> str:
    """Lower-case ASCII letters, digits and hyphens ("Spring news: 5 tips" -> "spring-news-5-tips")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return _NOT_SLUG.sub("-", ascii_text).strip("-")[:limit].rstrip("-")


def topic_ref(topic: Topic) -> str:
    """The topic's part of archive addresses: its id (what counts) and its name (for people)."""
    name = slugify(topic.name, 60)
    return f"{topic.id}-{name}" if name else str(topic.id)


def published(campaign: Campaign) -> bool:
    """Whether an archived campaign is shown: it has gone out to someone and is not transactional."""
    return campaign.kind != CampaignKind.TRANSACTIONAL and campaign.status in SENT_STATUSES and campaign.sent > 0


def _published_conditions() -> list:
    return [Campaign.kind != CampaignKind.TRANSACTIONAL.value, Campaign.status.in_([s.value for s in SENT_STATUSES]),
            Campaign.sent > 0]


# ------------------------------------------------------------------ the marketer's choice

def archive_choice(session: Session, campaign: Campaign) -> ArchivedIssue | None:
    return session.get(ArchivedIssue, campaign.id)


def set_archived(session: Session, settings: Settings, campaign: Campaign,
                 topic_id: int | None) -> ArchivedIssue | None:
    """Show the campaign in topic_id's archive (None: in no archive). Raises ValidationError; flushes."""
    issue = session.get(ArchivedIssue, campaign.id)
    if topic_id is None:
        if issue is not None:
            session.delete(issue)
            session.flush()
        return None
    if campaign.kind == CampaignKind.TRANSACTIONAL:
        raise ValidationError("transactional mail is personal and never shown in the public archive", field="archive")
    topic = session.get(Topic, topic_id)
    if topic is None or not topic.public:
        raise ValidationError("choose a public topic for the archive", field="topic_id")
    try:
        rendered = render_neutral(session, settings, campaign)
    except TemplateError as exc:
        raise ValidationError(f"this campaign cannot be shown without a recipient: {exc}", field="archive") from None
    if issue is not None and issue.topic_id == topic.id:
        return issue
    slug = _free_slug(session, topic.id, slugify(rendered.subject) or f"issue-{campaign.id}", campaign.id)
    if issue is None:
        issue = ArchivedIssue(campaign_id=campaign.id)
        session.add(issue)
    issue.topic_id, issue.slug, issue.archived_at = topic.id, slug, utcnow()
    session.flush()
    return issue


def _free_slug(session: Session, topic_id: int, base: str, campaign_id: int) -> str:
    taken = set(session.scalars(select(ArchivedIssue.slug).where(ArchivedIssue.topic_id == topic_id,
                                                                 ArchivedIssue.campaign_id != campaign_id,
                                                                 ArchivedIssue.slug.like(f"{base}%"))))
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


# ------------------------------------------------------------------ what the public sees

@dataclass(frozen=True)
class Entry:
    """One issue in a topic's list."""

    campaign_id: int
    slug: str
    subject: str
    summary: str
    sent_at: dt.datetime


def find_topic(session: Session, ref: str) -> Topic:
    """The public topic an archive address names (by the id before the first hyphen); raises NotFound."""
    head = ref.split("-", 1)[0]
    topic = session.get(Topic, int(head)) if head.isdigit() and len(head) < 12 else None
    if topic is None or not topic.public:
        raise NotFound("there is no such archive")
    return topic


def issues_of(session: Session, topic: Topic, limit: int = 500) -> list[tuple[ArchivedIssue, Campaign]]:
    """The topic's shown issues, newest first."""
    rows = session.execute(select(ArchivedIssue, Campaign).join(Campaign, Campaign.id == ArchivedIssue.campaign_id)
                           .where(ArchivedIssue.topic_id == topic.id, *_published_conditions())
                           .order_by(Campaign.started_at.desc(), Campaign.id.desc()).limit(limit))
    return [(i, c) for i, c in rows]


def archives(session: Session) -> list[tuple[Topic, int]]:
    """Public topics whose archive shows at least one issue, with how many."""
    rows = session.execute(select(Topic, func.count(ArchivedIssue.campaign_id))
                           .join(ArchivedIssue, ArchivedIssue.topic_id == Topic.id)
                           .join(Campaign, Campaign.id == ArchivedIssue.campaign_id)
                           .where(Topic.public.is_(True), *_published_conditions())
                           .group_by(Topic.id).order_by(Topic.name))
    return [(t, n) for t, n in rows]


def find_issue(session: Session, topic: Topic, slug: str) -> Campaign:
    """The shown campaign at /archive/<topic>/<slug>; raises NotFound for any other (not archived, not sent)."""
    row = session.execute(select(Campaign).join(ArchivedIssue, ArchivedIssue.campaign_id == Campaign.id)
                          .where(ArchivedIssue.topic_id == topic.id, ArchivedIssue.slug == slug[:120],
                                 *_published_conditions())).scalar_one_or_none()
    if row is None:
        raise NotFound("this issue is not in the archive")
    return row


def signup_url(session: Session, settings: Settings, topic_id: int) -> str:
    """The hosted page of an active sign-up form for the topic (else of any active form); "" when there is none."""
    base = select(SignupForm).where(SignupForm.active.is_(True)).order_by(SignupForm.id).limit(1)
    form = session.scalar(base.join(signup_form_topic, signup_form_topic.c.form_id == SignupForm.id)
                          .where(signup_form_topic.c.topic_id == topic_id)) or session.scalar(base)
    return recipient_urls.signup_form(settings.base_url, form.public_id) if form is not None else ""


def _blank(value: Any) -> Any:
    """A contributor's value with nothing in it, in the same shape (a code's fields empty, a link function that
    gives ""), so a template using it renders without it instead of failing."""
    if isinstance(value, Mapping):
        return {k: _blank(v) for k, v in value.items()}
    if callable(value):
        return lambda *_args, **_kwargs: ""
    if isinstance(value, list | tuple):
        return []
    return ""


def blank_contributions(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Every contributor's template values for this campaign (a coupon, a survey…), emptied: no code, no link."""
    found = sample.attachments(session, contributions.attributes_of(campaign))
    return {name: _blank(value) for name, value in found.extras.items()}


def render_neutral(session: Session, settings: Settings, campaign: Campaign) -> Rendered:
    """The campaign as nobody in particular gets it, without unsubscribe and preference links; raises
    TemplateError."""
    result = compiled(campaign)
    owner = campaign.from_email in ("", FROM_OWNER)
    sender = sender_context(settings.sender_name if owner or not campaign.from_name else campaign.from_name,
                            settings.sender_email if owner else campaign.from_email,
                            postal_address(session, settings))
    ctx = {**blank_contributions(session, campaign), "contact": NEUTRAL_CONTACT, "sender": sender,
           "unsubscribe_url": RECIPIENT_LINK, "preferences_url": RECIPIENT_LINK,
           "feed_items": feed_items.values_of(session, campaign.id)}
    rendered = result.render(ctx, lambda i: result.links[i], "")
    html = _RECIPIENT_LINKS.sub("", _PIXEL.sub("", rendered.html)).replace(RECIPIENT_LINK, "#")
    text = "\n".join(line for line in rendered.text.splitlines() if RECIPIENT_LINK not in line)
    return Rendered(rendered.subject, html, text)


def _headline(session: Session, settings: Settings, campaign: Campaign) -> tuple[str, str] | None:
    """(subject, summary) of a shown campaign, rendered once per process and content (a sent campaign's content
    never changes), so a list of hundreds of issues does not compile each on every request. None when it no longer
    renders."""
    key = (campaign.id, source_of(campaign).content_hash(), campaign.from_name, campaign.from_email)
    if key in _headlines:
        _headlines.move_to_end(key)
        return _headlines[key]
    try:
        rendered = render_neutral(session, settings, campaign)
    except TemplateError:
        found = None
    else:
        summary = campaign.preheader.strip()
        if not summary or "{" in summary:   # none, or template code: the rendered text says it without the code
            summary = " ".join(rendered.text.split())[:300]
        found = (rendered.subject, summary)
    _headlines[key] = found
    if len(_headlines) > _HEADLINES:
        _headlines.popitem(last=False)
    return found


def entries(session: Session, settings: Settings, topic: Topic, limit: int = 500) -> list[Entry]:
    """The topic's issues as the index and the feed list them (a campaign that no longer renders is left out)."""
    out = []
    for issue, campaign in issues_of(session, topic, limit):
        found = _headline(session, settings, campaign)
        if found is not None:
            out.append(Entry(campaign.id, issue.slug, found[0], found[1],
                             campaign.started_at or campaign.finished_at or issue.archived_at))
    return out
