"""The weekly/monthly digest: nurture mail held for a contact's frequency choice goes out as one mail (docs/policy.md).

A contact who chose *weekly* or *monthly* mail in the preference center gets at most one nurture or marketing mail
per 7 / 30 days (the policy's `preference` rule). Nurture mail held by that rule waits here: once the policy would
let a nurture mail reach the contact again, the daily run (campaigns.scheduler, task "digest") turns every such held
send into an item of ONE digest mail — subject and preheader rendered for the contact, with a "Read it" link to the
web version (/m/<token>, Purpose.WEB) — and marks it skipped/digest, so it never goes out on its own. The digest is
a per-run nurture campaign sent through the normal send path (policy, suppression, caps, ledger).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template
from jinja2.exceptions import TemplateError as JinjaTemplateError
from sqlalchemy import exists, insert, select, update
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.composing import contributions
from campaigns.composing.contributions import Contributor, Recipient, register
from campaigns.config import PolicySettings
from campaigns.contacts.records import personalization
from campaigns.errors import NotFound
from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactInterest,
    ContactStatus,
    DigestItem,
    DigestRun,
    Frequency,
    Send,
    SendReason,
    SendStatus,
    Subscription,
    campaign_topic,
    utcnow,
)
from campaigns.resources import starters_dir
from campaigns.runtime import Runtime
from campaigns.sending import policy as policy_service
from campaigns.sending.delivery import CampaignMailer
from campaigns.sending.finishing import maybe_finish
from campaigns.sending.lifecycle import dispatch_to
from mailer.compose import TemplateError
from mailer.personalize import text_env
from mailer.tracking import Purpose

logger = logging.getLogger(__name__)

DIGEST_MJML = starters_dir() / "digest.mjml"
DIGEST_SUBJECT = ("{{ contact.first_name|default('Hello', true) }}, your digest: {{ digest_items|length }} "
                  "mail{{ 's' if digest_items|length != 1 }} from {{ sender.name }}")
DIGEST_PREHEADER = "Everything we wrote since your last digest, in one mail"
DIGEST_TEXT = """Hello {{ contact.first_name|default('there', true) }},

here is what we sent since your last digest:
{% for item in digest_items %}
* {{ item.subject }}
  {{ item.preheader }}
  Read it: {{ item.url }}
{% endfor %}
You get this digest because you chose to hear from us less often.
Change how often: {{ preferences_url }}
Unsubscribe: {{ unsubscribe_url }}
"""
CHUNK = 500               # contacts per statement when collecting items
LOAD_SPAN = 2000          # contact-id span of digest items loaded at once while rendering


# ------------------------------------------------------------------ who is due

def due_contacts(session: Session, policy: PolicySettings, now: dt.datetime) -> list[int]:
    """Weekly/monthly readers with nurture mail held for their choice whom the policy would let a mail reach now.

    That is the digest's period: 7 (weekly) or 30 (monthly) days since their last nurture or marketing mail —
    usually the previous digest — the same rolling windows the `preference` rule holds mail for.
    """
    held = _held_items().with_only_columns(Send.contact_id)
    stats = policy_service.stats_query(policy, now, held)
    rows = session.scalars(
        _held_items().with_only_columns(Send.contact_id).distinct()
        .outerjoin(stats, stats.c.contact_id == Send.contact_id)
        .where(Campaign.valid_until.is_(None) | (Campaign.valid_until > now),
               policy_service.hold_reason(CampaignKind.NURTURE, policy, now, stats).is_(None))
        .order_by(Send.contact_id))
    return list(rows)


def _held_items():
    """Send rows a digest collects: nurture, held for the contact's weekly/monthly choice, of a running campaign."""
    return (select(Send.id).join(Campaign, Campaign.id == Send.campaign_id).join(Contact, Contact.id == Send.contact_id)
            .where(Send.status == SendStatus.HELD, Send.reason == SendReason.PREFERENCE.value,
                   Campaign.kind == CampaignKind.NURTURE.value, Campaign.status == CampaignStatus.RUNNING,
                   Campaign.id.not_in(select(DigestRun.campaign_id)),
                   Contact.status == ContactStatus.SUBSCRIBED,
                   Contact.frequency.in_([Frequency.WEEKLY.value, Frequency.MONTHLY.value]),
                   # still in one of the campaign's topics, as the send path re-checks (delivery._eligible);
                   # a campaign without topics (all contacts, or a segment alone) asks for none. One EXISTS
                   # joining both tables: a nested IN (SELECT …) did not correlate to this campaign.
                   Campaign.all_contacts.is_(True)
                   | ~exists().where(campaign_topic.c.campaign_id == Campaign.id) | exists().where(
                       Subscription.contact_id == Send.contact_id, Subscription.subscribed.is_(True),
                       campaign_topic.c.campaign_id == Campaign.id,
                       campaign_topic.c.topic_id == Subscription.topic_id)))


# ------------------------------------------------------------------ one run

@dataclass
class DigestResult:
    """What one digest run did."""

    campaign_id: int | None = None
    contacts: int = 0
    items: int = 0
    repaired: int = 0


def collect(session: Session, policy: PolicySettings, now: dt.datetime) -> tuple[int | None, list[int], int]:
    """Create this run's digest campaign and move the due contacts' held sends into it (skipped/digest); the
    caller commits.

    Returns (campaign id, contacts with items, items); (None, [], 0) when nobody is due.
    """
    due = due_contacts(session, policy, now)
    if not due:
        return None, [], 0
    campaign = Campaign(name=f"Digest {now:%Y-%m-%d %H:%M} UTC", kind=CampaignKind.NURTURE,
                        subject=DIGEST_SUBJECT, preheader=DIGEST_PREHEADER,
                        mjml=DIGEST_MJML.read_text(encoding="utf-8"), text_body=DIGEST_TEXT, all_contacts=True,
                        status=CampaignStatus.DRAFT)
    session.add(campaign)
    session.flush()
    run = DigestRun(campaign_id=campaign.id, created_at=now)
    session.add(run)
    note = f"sent as an item of the digest of {now:%Y-%m-%d}"
    contacts: set[int] = set()
    per_campaign: dict[int, int] = defaultdict(int)
    for i in range(0, len(due), CHUNK):
        chunk = due[i:i + CHUNK]
        picked = _held_items().where(Send.contact_id.in_(chunk), Campaign.valid_until.is_(None)
                                     | (Campaign.valid_until > now))
        # status again in the outer WHERE: a send released or claimed meanwhile is not taken.
        rows = session.execute(
            update(Send).where(Send.id.in_(picked.scalar_subquery()), Send.status == SendStatus.HELD)
            .values(status=SendStatus.SKIPPED, reason=SendReason.DIGEST.value, last_error=note)
            .returning(Send.id, Send.contact_id, Send.campaign_id)
            .execution_options(synchronize_session=False)).all()
        if not rows:
            continue
        session.execute(insert(DigestItem), [{"send_id": s, "digest_campaign_id": campaign.id, "contact_id": c}
                                             for s, c, _cid in rows])
        for _s, c, cid in rows:
            contacts.add(c)
            per_campaign[cid] += 1
    for cid, n in per_campaign.items():
        session.execute(update(Campaign).where(Campaign.id == cid)
                        .values(held=Campaign.held - n, skipped=Campaign.skipped + n))
    run.contacts, run.items = len(contacts), sum(per_campaign.values())
    if not contacts:           # everything was taken meanwhile: no empty digest campaign
        session.rollback()
        return None, [], 0
    for cid in per_campaign:
        maybe_finish(session, cid)
    logger.info("digest campaign_id=%s: %d items for %d contacts", campaign.id, run.items, run.contacts)
    return campaign.id, sorted(contacts), run.items


def run(rt: Runtime, now: dt.datetime | None = None) -> DigestResult:
    """The periodic task: send every due contact one digest of their held nurture mail.

    A run whose campaign was created but never dispatched (the worker died in between) is dispatched first:
    dispatch_to is idempotent, so nobody's items are lost and nobody gets a digest twice.
    """
    now = now or utcnow()
    result = DigestResult()
    with rt.session_factory() as session:
        stranded = list(session.scalars(
            select(DigestRun.campaign_id).join(Campaign, Campaign.id == DigestRun.campaign_id)
            .where(Campaign.status == CampaignStatus.DRAFT)))
        todo = {cid: sorted(set(session.scalars(select(DigestItem.contact_id)
                                                .where(DigestItem.digest_campaign_id == cid))))
                for cid in stranded}
        policy = policy_service.load(session, rt.settings.policy)
        session.commit()
        campaign_id, contacts, items = collect(session, policy, now)
        session.commit()
    for cid, ids in todo.items():
        result.repaired += dispatch_to(rt, cid, ids)
    if campaign_id is not None:
        dispatch_to(rt, campaign_id, contacts)
        result.campaign_id, result.contacts, result.items = campaign_id, len(contacts), items
    return result


# ------------------------------------------------------------------ rendering the digest's items

@dataclass
class DigestItems:
    """A digest campaign's per-recipient `digest_items`; loaded by contact-id span, not a query per message."""

    rt: Runtime
    campaign_id: int
    _span: tuple[int, int] = (1, 0)
    _items: dict[int, list[tuple[int, int]]] = field(default_factory=dict)      # contact -> [(send id, campaign id)]
    _templates: dict[int, tuple[Template, Template, str]] = field(default_factory=dict)

    @classmethod
    def for_campaign(cls, rt: Runtime, session: Session, campaign: Campaign) -> DigestItems | None:
        """The provider for a digest campaign, None for any other campaign."""
        if session.get(DigestRun, campaign.id) is None:
            return None
        return cls(rt, campaign.id)

    def items_for(self, contact_id: int, context: Mapping[str, Any]) -> list[dict[str, str]]:
        """The contact's items: subject and preheader rendered for them, and the web version's URL."""
        if not self._span[0] <= contact_id <= self._span[1]:
            self._load(contact_id)
        out = []
        base = self.rt.settings.base_url
        for send_id, campaign_id in self._items.get(contact_id, ()):
            subject, preheader, name = self._templates[campaign_id]
            out.append({"subject": _render(subject, context) or name, "preheader": _render(preheader, context),
                        "url": recipient_urls.sealed(base, self.rt.tokens, Purpose.WEB, send_id)})
        return out

    def _load(self, contact_id: int) -> None:
        span = (contact_id, contact_id + LOAD_SPAN - 1)
        items: dict[int, list[tuple[int, int]]] = defaultdict(list)
        with self.rt.session_factory() as session:
            rows = session.execute(
                select(DigestItem.contact_id, DigestItem.send_id, Send.campaign_id)
                .join(Send, Send.id == DigestItem.send_id)
                .where(DigestItem.digest_campaign_id == self.campaign_id, DigestItem.contact_id.between(*span))
                .order_by(DigestItem.contact_id, DigestItem.send_id)).all()
            missing = {cid for _c, _s, cid in rows} - set(self._templates)
            for cid, subject, preheader, name in session.execute(
                    select(Campaign.id, Campaign.subject, Campaign.preheader, Campaign.name)
                    .where(Campaign.id.in_(missing))):
                self._templates[cid] = (_template(subject), _template(preheader), name)
        for contact, send_id, cid in rows:
            items[contact].append((send_id, cid))
        self._span, self._items = span, dict(items)


class Digest(Contributor):
    """A digest campaign's `digest_items`; after the other contributors, as the items render with their values."""

    name = "digest"
    order = 90

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> DigestItems | None:
        return DigestItems.for_campaign(rt, session, campaign)

    def variables(self, state: DigestItems, recipient: Recipient) -> dict[str, Any]:
        return {"digest_items": state.items_for(recipient.contact_id, recipient.context)}


register(Digest())


def _template(source: str) -> Template:
    try:
        return text_env().from_string(source or "")
    except JinjaTemplateError:
        return text_env().from_string("")


def _render(template: Template, context: Mapping[str, Any]) -> str:
    try:
        return " ".join(template.render(context).split())
    except JinjaTemplateError:
        return ""


# ------------------------------------------------------------------ the web version of a send

def web_version(rt: Runtime, session: Session, send_id: int) -> str:
    """The HTML of a send's message as its contact got (or would have got) it, with tracked links; NotFound if gone."""
    send = session.get(Send, send_id)
    contact = session.get(Contact, send.contact_id) if send is not None else None
    campaign = session.get(Campaign, send.campaign_id) if send is not None else None
    if contact is None or campaign is None:
        raise NotFound("this message is no longer available")
    try:
        mailer = CampaignMailer.for_campaign(rt, session, campaign)
    except TemplateError:
        raise NotFound("this message cannot be shown any more") from None
    interests = session.scalars(select(ContactInterest.interest).where(ContactInterest.contact_id == contact.id))
    sender = mailer.owners.get(contact.owner_id, (None, mailer.sender))[1] if contact.owner_id else mailer.sender
    compiled, link_ids, variant = mailer.content(send.variant)   # an A/B variant's content and From
    sender = variant.sender if variant is not None and variant.sender else sender
    base = rt.settings.base_url
    ctx: dict[str, Any] = {
        "contact": personalization(contact, list(interests)),
        "sender": sender,
        "unsubscribe_url": recipient_urls.sealed(base, rt.tokens, Purpose.UNSUBSCRIBE, contact.id, campaign.id),
        "preferences_url": recipient_urls.sealed(base, rt.tokens, Purpose.PREFERENCES, contact.id),
    }
    ctx.update(contributions.variables(mailer.contributions, Recipient(send_id, contact.id, ctx, web=True)))
    try:
        return compiled.render(
            ctx, lambda i: recipient_urls.sealed(base, rt.tokens, Purpose.CLICK, send_id, link_ids[i]), "").html
    except TemplateError:
        raise NotFound("this message cannot be shown any more") from None

