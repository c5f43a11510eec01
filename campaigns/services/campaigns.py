"""Campaigns: create and edit, validate, compile (cached by content hash), link table."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import Campaign, CampaignKind, CampaignStatus, Link, Topic
from campaigns.services.contacts import normalize_email
from mailer.compose import CampaignSource, CompiledCampaign, TemplateError, compile_campaign

logger = logging.getLogger(__name__)

EDITABLE_STATUSES = {CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED}
_cache: OrderedDict[str, CompiledCampaign] = OrderedDict()
_CACHE_SIZE = 32


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """Load one campaign or raise NotFound."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


def source_of(campaign: Campaign) -> CampaignSource:
    """The parts of a campaign that determine its compiled form."""
    return CampaignSource(mjml=campaign.mjml, subject=campaign.subject, preheader=campaign.preheader,
                          text_body=campaign.text_body)


def compiled(campaign: Campaign) -> CompiledCampaign:
    """Compile once per content hash per process; editing the campaign changes the hash and so the entry."""
    src = source_of(campaign)
    key = src.content_hash()
    hit = _cache.get(key)
    if hit is not None:
        _cache.move_to_end(key)
        return hit
    result = compile_campaign(src)
    _cache[key] = result
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def save_campaign(session: Session, data: Mapping[str, Any], campaign: Campaign | None = None,
                  topic_ids: Iterable[int] = (), relay_names: Iterable[str] = ()) -> Campaign:
    """Create or update a draft from form-like data; invalid templates are saved but reported (with line)."""
    if campaign is not None and campaign.status not in EDITABLE_STATUSES:
        raise InvalidState(f"a {campaign.status} campaign can no longer be edited")
    name = str(data.get("name", "")).strip()
    subject = str(data.get("subject", "")).strip()
    if not name:
        raise ValidationError("give the campaign a name", field="name")
    if not subject:
        raise ValidationError("the subject is empty", field="subject")
    kind = str(data.get("kind", CampaignKind.NURTURE))
    if kind not in CampaignKind.__members__.values():
        raise ValidationError(f"unknown kind {kind!r}", field="kind")
    from_email = str(data.get("from_email", "") or "").strip()
    reply_to = str(data.get("reply_to", "") or "").strip()
    from_email = normalize_email(from_email, own_address=True) if from_email else ""
    reply_to = normalize_email(reply_to, own_address=True) if reply_to else ""
    relay = str(data.get("relay", "") or "").strip()
    known_relays = list(relay_names)
    if relay and known_relays and relay not in known_relays:
        raise ValidationError(f"there is no relay called {relay!r}; configured: {', '.join(known_relays)}",
                              field="relay")
    if campaign is None:
        campaign = Campaign(status=CampaignStatus.DRAFT)
        session.add(campaign)
    campaign.relay = "" if relay == (known_relays[0] if known_relays else "") else relay
    campaign.name = name
    campaign.subject = subject
    campaign.kind = CampaignKind(kind)
    campaign.preheader = str(data.get("preheader", "") or "").strip()
    campaign.from_name = str(data.get("from_name", "") or "").strip()
    campaign.from_email = from_email
    campaign.reply_to = reply_to
    campaign.mjml = str(data.get("mjml", "") or "")
    campaign.text_body = str(data.get("text_body", "") or "")
    campaign.all_contacts = bool(data.get("all_contacts"))
    ids = set(topic_ids)
    campaign.topics = list(session.scalars(select(Topic).where(Topic.id.in_(ids)))) if ids else []
    session.flush()
    return campaign


def validate(campaign: Campaign) -> CompiledCampaign:
    """Compile, raising ValidationError with the line number on MJML or template errors."""
    if not campaign.mjml.strip():
        raise ValidationError("the campaign has no content yet", field="mjml")
    try:
        return compiled(campaign)
    except TemplateError as exc:
        raise ValidationError(str(exc), field="mjml") from None


def ensure_links(session: Session, campaign: Campaign, result: CompiledCampaign) -> list[int]:
    """Store the campaign's link table (position -> id) and return link ids by position."""
    existing = {link.position: link for link in campaign.links}
    for position, url in enumerate(result.links):
        link = existing.get(position)
        if link is None:
            campaign.links.append(Link(position=position, url=url))
        elif link.url != url:
            link.url = url
    for position, link in existing.items():
        if position >= len(result.links):
            campaign.links.remove(link)
    session.flush()
    by_pos = {link.position: link.id for link in campaign.links}
    return [by_pos[i] for i in range(len(result.links))]


def link_ids(session: Session, campaign_id: int) -> list[int]:
    """Link ids of a campaign ordered by position."""
    return list(session.scalars(select(Link.id).where(Link.campaign_id == campaign_id).order_by(Link.position)))
