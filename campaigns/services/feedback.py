"""What recipients do flows back into the contact list: opens, clicks, unsubscribes, preference changes."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.errors import NotFound
from campaigns.models import (
    Campaign,
    Contact,
    ContactStatus,
    Event,
    EventType,
    Link,
    Send,
    Subscription,
    Topic,
    campaign_topic,
    utcnow,
)
from campaigns.services.contacts import set_subscriptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnsubscribeScope:
    """Who a token unsubscribes and which topics its campaign belongs to."""

    contact: Contact
    campaign: Campaign | None
    topics: list[Topic]


def resolve_unsubscribe(session: Session, contact_id: int, campaign_id: int) -> UnsubscribeScope:
    """Load the contact (and campaign) named by an unsubscribe token; NotFound for tests or erased contacts."""
    contact = session.get(Contact, contact_id) if contact_id else None
    if contact is None:
        raise NotFound("no contact")
    campaign = session.get(Campaign, campaign_id) if campaign_id else None
    topics = list(session.scalars(
        select(Topic).join(campaign_topic, campaign_topic.c.topic_id == Topic.id)
        .where(campaign_topic.c.campaign_id == campaign_id))) if campaign else []
    return UnsubscribeScope(contact, campaign, topics)


def unsubscribe(session: Session, scope: UnsubscribeScope, *, everything: bool, source: str) -> bool:
    """Unsubscribe from all mail or from the campaign's topics; idempotent; returns whether anything changed."""
    contact = scope.contact
    changed = False
    if everything or not scope.topics:
        if contact.status == ContactStatus.SUBSCRIBED or contact.status == ContactStatus.PENDING:
            contact.status = ContactStatus.UNSUBSCRIBED
            changed = True
    else:
        topic_ids = [t.id for t in scope.topics]
        changed = bool(session.execute(
            update(Subscription).where(Subscription.contact_id == contact.id,
                                       Subscription.topic_id.in_(topic_ids), Subscription.subscribed.is_(True))
            .values(subscribed=False, updated_at=utcnow())).rowcount)
    if changed:
        session.add(Event(contact_id=contact.id, campaign_id=scope.campaign.id if scope.campaign else None,
                          type=EventType.UNSUBSCRIBE,
                          data={"scope": "all" if everything or not scope.topics else "topics",
                                "topics": [t.name for t in scope.topics], "source": source}))
    session.commit()
    return changed


def update_preferences(session: Session, contact: Contact, *, topic_ids: Iterable[int], first_name: str,
                       last_name: str, resubscribe: bool) -> None:
    """Apply the preference center form and keep a consent event."""
    public = set(session.scalars(select(Topic.id).where(Topic.public.is_(True))))
    chosen = set(topic_ids) & public
    hidden = {s.topic_id for s in contact.subscriptions if s.subscribed and s.topic_id not in public}
    set_subscriptions(session, contact, chosen | hidden)
    contact.first_name = first_name.strip()[:200]
    contact.last_name = last_name.strip()[:200]
    if resubscribe and contact.status == ContactStatus.UNSUBSCRIBED:
        contact.status = ContactStatus.SUBSCRIBED
        contact.consent_source = "preference center"
        contact.consent_at = utcnow()
    session.add(Event(contact_id=contact.id, type=EventType.PREFERENCES,
                      data={"topics": sorted(chosen), "resubscribed": resubscribe}))
    session.commit()


def _send(session: Session, send_id: int) -> Send | None:
    return session.get(Send, send_id) if send_id else None


def record_open(session: Session, send_id: int, user_agent: str) -> None:
    """Record an open of a real send (test sends have id 0 and record nothing)."""
    send = _send(session, send_id)
    if send is None:
        return
    now = utcnow()
    session.add(Event(contact_id=send.contact_id, campaign_id=send.campaign_id, send_id=send.id,
                      type=EventType.OPEN, occurred_at=now, data={"ua": user_agent[:300]}))
    session.execute(update(Contact).where(Contact.id == send.contact_id).values(last_opened_at=now))
    session.commit()


def click_target(session: Session, send_id: int, link_id: int) -> tuple[str, Send | None]:
    """The stored URL of link_id, only if the link belongs to the send's campaign; NotFound otherwise."""
    link = session.get(Link, link_id)
    if link is None:
        raise NotFound("unknown link")
    send = _send(session, send_id)
    if send_id and (send is None or send.campaign_id != link.campaign_id):
        raise NotFound("link does not belong to this message")
    return link.url, send


def record_click(session: Session, send: Send | None, link_id: int, url: str, user_agent: str) -> None:
    """Record a click (and the open it implies)."""
    if send is None:
        return
    now = utcnow()
    session.add(Event(contact_id=send.contact_id, campaign_id=send.campaign_id, send_id=send.id,
                      type=EventType.CLICK, occurred_at=now, data={"link_id": link_id, "url": url[:500],
                                                                   "ua": user_agent[:300]}))
    session.execute(update(Contact).where(Contact.id == send.contact_id).values(last_clicked_at=now))
    session.commit()
