"""The confirmation of a place: a transactional message with the event's .ics attached, sent right after the page's
POST gave someone a place (campaigns.transactional: its own queue and retries, suppression checked, no consent
needed — the person just asked for it).

Each event has its own transactional template, made when first needed (slug `event-<id>-confirmation`); the
marketer may edit its wording like any transactional template (its variables: title, when, place, link,
answer_url).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.events import ics, service
from campaigns.events.replies import Invitation
from campaigns.models import Campaign, CampaignKind, CampaignStatus, TxMessage
from campaigns.transactional import accept as tx
from mailer.tracking import Purpose

if TYPE_CHECKING:
    from campaigns.runtime import Runtime

SUBJECT = "You have a place: {{ title }}"
MJML = """<mjml>
  <mj-body background-color="#f3f4f6">
    <mj-section background-color="#ffffff" padding="28px 24px"><mj-column>
      <mj-text font-size="22px" line-height="28px" font-weight="700">See you there,
        {{ contact.first_name|default('friend', true) }}</mj-text>
      <mj-text>You have a place at <strong>{{ title }}</strong> on {{ when }}.</mj-text>
      <mj-text>{{ place }}{% if link %}<br><a href="{{ link }}">{{ link }}</a>{% endif %}</mj-text>
      <mj-text>The attached calendar file adds it to your calendar. Plans changed?
        <a href="{{ answer_url }}">Change your answer</a> and your place goes to the next person waiting.</mj-text>
      <mj-text>{{ sender.name }}</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""
TEXT = """Hello {{ contact.first_name|default('there', true) }},

you have a place at {{ title }} on {{ when }}.
{{ place }}{% if link %}
{{ link }}{% endif %}

The attached calendar file adds it to your calendar. Plans changed? Change your answer here, and your place goes
to the next person waiting: {{ answer_url }}

{{ sender.name }}
"""


def slug(event_id: int) -> str:
    return f"event-{event_id}-confirmation"


def template(session: Session, event_id: int, title: str) -> str:
    """The event's confirmation template (made when first needed); returns its slug."""
    name = slug(event_id)
    if session.scalar(select(Campaign.id).where(Campaign.slug == name)) is None:
        try:
            with session.begin_nested():
                session.add(Campaign(name=f"Event confirmation: {title[:150]}", kind=CampaignKind.TRANSACTIONAL,
                                     slug=name, subject=SUBJECT, preheader="Your place and a calendar file",
                                     mjml=MJML, text_body=TEXT, all_contacts=True, status=CampaignStatus.DRAFT))
        except IntegrityError:          # made by a concurrent answer
            pass
    return name


def send(rt: Runtime, session: Session, invitation: Invitation) -> TxMessage:
    """Queue the confirmation of the invitee's place (delivered once the caller commits)."""
    event = invitation.event
    answer_url = recipient_urls.sealed(rt.settings.base_url, rt.tokens, Purpose.EVENT, invitation.send_id, 0)
    calendar = ics.calendar(event, base_url=rt.settings.base_url)
    request = tx.Request(
        template=template(session, event.id, event.title), to=invitation.contact.email,
        to_name=invitation.contact.full_name,
        variables={"title": event.title, "when": service.when(event), "place": event.place, "link": event.link,
                   "answer_url": answer_url},
        attachments=[{"filename": "event.ics", "content_type": "text/calendar",
                      "content": base64.b64encode(calendar).decode("ascii")}])
    return tx.accept(rt, session, request)
