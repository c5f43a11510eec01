"""Demo event: a pruning workshop ten days from now with 6 places, its invitation (a nurture draft carrying the
answer links), and a few answers recorded through the real reply code (campaigns.events.replies): the places fill,
one person waits, others said maybe or no."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.events import replies, service
from campaigns.models import Campaign, CampaignKind, Contact, ContactStatus, ReplyAnswer, Topic, utcnow

INVITE_MJML = """<mjml>
  <mj-body background-color="#f0fdf4">
    <mj-section background-color="#ffffff" padding="28px 24px">
      <mj-column>
        <mj-text font-size="22px" font-weight="700">
          {{ contact.first_name|default("Hello", true) }}, come and prune roses with us</mj-text>
        <mj-text font-size="16px" line-height="24px">Two hours in the nursery's rose garden with our head
          gardener: when to cut, where, and why. Coffee and cake included.
          One click tells us whether you come.</mj-text>
        <mj-text font-size="16px">{{ event_block() }}</mj-text>
        <mj-text font-size="14px" color="#6b7280">See you there, {{ sender.name }}</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""
ANSWERS = [ReplyAnswer.YES] * 7 + [ReplyAnswer.MAYBE] * 2 + [ReplyAnswer.NO] * 2


def seed_event(session: Session, settings: Settings, topic: Topic) -> int:
    """The upcoming event with its invitation and a few answers; returns the event id."""
    invitation = Campaign(name="Rose pruning workshop (invitation)", kind=CampaignKind.NURTURE,
                          subject="{{ contact.first_name|default('Hello', true) }}, join our rose pruning workshop",
                          preheader="Saturday morning in the rose garden, 6 places",
                          from_name=settings.sender_name, from_email=settings.sender_email, mjml=INVITE_MJML)
    invitation.topics = [topic]
    session.add(invitation)
    session.flush()
    day = (utcnow() + dt.timedelta(days=10)).astimezone(service.zone_of("Europe/Berlin"))
    event = service.save(session, None, {
        "title": "Rose pruning workshop", "starts_at": f"{day:%Y-%m-%d}T10:00", "zone": "Europe/Berlin",
        "duration_minutes": "120", "capacity": "6", "place": "Rose garden, Gärtnerei Tulpenweg 3, Berlin",
        "description": "Bring gloves; secateurs are provided.", "campaign_id": str(invitation.id)})
    people = list(session.scalars(select(Contact).where(Contact.status == ContactStatus.SUBSCRIBED)
                                  .order_by(Contact.id).limit(len(ANSWERS))))
    for contact, answer in zip(people, ANSWERS, strict=False):
        replies.record(session, replies.Invitation(event, contact, 0, None), answer)
    return event.id
