"""Where a tracked click goes: the link's stored URL, or a personalised link rendered again for its send.

A personalised link (`https://shop.example/shop?code={{ coupon.code }}`) is stored as its template. The click token
names only the send and the link, so the target is rendered from what the send had: its contact, its sender, its
coupon code and survey links. The scheme and host are fixed in the template (mailer.compose.personalised_link), and
the rendered URL must keep them, so no value can send a click to another site.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.composing import contributions
from campaigns.composing import editor as campaign_service
from campaigns.contacts.records import personalization
from campaigns.errors import NotFound
from campaigns.models import Campaign, Contact, ContactInterest, Link, Send, Sender, TxMessage
from campaigns.runtime import Runtime
from mailer.compose import TemplateError, is_personalised, render_link
from mailer.tracking import Purpose


def link_target(rt: Runtime, session: Session, send_id: int, link_id: int) -> str:
    """The URL a click on link_id in send_id's message goes to; NotFound when it cannot be worked out."""
    link = session.get(Link, link_id)
    if link is None:
        raise NotFound("unknown link")
    if not is_personalised(link.url):
        return link.url
    campaign = session.get(Campaign, link.campaign_id)
    if campaign is None:
        raise NotFound("unknown link")
    return _rendered(link, _context(rt, session, campaign, send_id))


def tx_link_target(rt: Runtime, session: Session, tx_id: int, link_id: int) -> str:
    """The URL a click on link_id in transactional message tx_id goes to: rendered with its contact and the API
    call's variables (`https://shop.example/orders/{{ order_number }}`); NotFound for a link of another template."""
    message = session.get(TxMessage, tx_id)
    link = session.get(Link, link_id)
    if message is None or link is None or link.campaign_id != message.campaign_id:
        raise NotFound("unknown link")
    if not is_personalised(link.url):
        return link.url
    campaign = session.get(Campaign, link.campaign_id)
    contact = session.get(Contact, message.contact_id) if message.contact_id else None
    if campaign is None or contact is None:
        raise NotFound("this message is no longer available")
    ctx = _context(rt, session, campaign, 0)
    interests = session.scalars(select(ContactInterest.interest).where(ContactInterest.contact_id == contact.id))
    ctx["contact"] = personalization(contact, list(interests))
    ctx.update(message.variables or {})
    return _rendered(link, ctx)


def _rendered(link: Link, ctx: dict[str, Any]) -> str:
    """link's URL rendered with ctx, on the site its template names."""
    try:
        url = render_link(link.url, ctx)
    except TemplateError:
        raise NotFound("this link cannot be followed any more") from None
    template_site, site = urlsplit(link.url), urlsplit(url)
    if (site.scheme.lower(), site.netloc.lower()) != (template_site.scheme.lower(), template_site.netloc.lower()):
        raise NotFound("this link cannot be followed")
    return url


def _context(rt: Runtime, session: Session, campaign: Campaign, send_id: int) -> dict[str, Any]:
    """The template values the send's message was rendered with (a blank sample for a test send, id 0)."""
    settings = rt.settings
    ctx = campaign_service.sample_extras(session, contributions.attributes_of(campaign), settings.base_url,
                                         rt.tokens)
    name, email = campaign_service.from_identity(campaign, settings)
    postal = campaign_service.postal_address(session, settings)
    ctx["sender"] = campaign_service.sender_context(name, email, postal)
    send = session.get(Send, send_id) if send_id else None
    if send is None or send.campaign_id != campaign.id:
        if send_id:
            raise NotFound("this message is no longer available")
        ctx["contact"] = dict(campaign_service.SAMPLE_CONTACT)
        return ctx
    contact = session.get(Contact, send.contact_id)
    if contact is None:
        raise NotFound("this message is no longer available")
    interests = session.scalars(select(ContactInterest.interest).where(ContactInterest.contact_id == contact.id))
    ctx["contact"] = personalization(contact, list(interests))
    if campaign.from_email == campaign_service.FROM_OWNER and contact.owner_id:
        owner = session.get(Sender, contact.owner_id)
        if owner is not None:
            ctx["sender"] = campaign_service.sender_context(owner.name, owner.email, postal, owner.title or "")
    base = settings.base_url
    ctx["unsubscribe_url"] = recipient_urls.sealed(base, rt.tokens, Purpose.UNSUBSCRIBE, contact.id, campaign.id)
    ctx["preferences_url"] = recipient_urls.sealed(base, rt.tokens, Purpose.PREFERENCES, contact.id)
    ctx.update(contributions.recall(rt, session, campaign, send_id, contact.id))   # a coupon, survey links…
    return ctx
