"""The mail an event sends by itself, through the normal send path as nurture mail (policy, suppression, the
ledger): the reminder the day before, and the note to someone the waitlist moved up.

The periodic `event_mail` job (every minute) and the reply page (right after a promotion) run `run`. Who gets a
mail is marked on their reply in the same transaction that creates its campaign (`reminder_campaign_id`,
`notice_campaign_id`, by a conditional UPDATE), so each person gets each mail once, even when two runs overlap; a
campaign created but not dispatched (the worker died in between) is dispatched on the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.models import (
    CalendarEvent,
    Campaign,
    CampaignKind,
    CampaignStatus,
    EventMailing,
    EventMailKind,
    EventReply,
    ReplyAnswer,
    utcnow,
)
from campaigns.sending.lifecycle import dispatch_to

if TYPE_CHECKING:
    from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

REMIND_BEFORE = dt.timedelta(hours=24)    # the reminder goes once the event is less than a day away
REMINDED = (ReplyAnswer.YES.value, ReplyAnswer.MAYBE.value)

_FOOTER = """
    <mj-section padding="16px 0"><mj-column>
      <mj-text align="center" font-size="12px" line-height="18px" color="#6b7280">{{ sender.postal_address }}<br>
        <a href="{{ preferences_url }}" style="color:#6b7280">Preferences</a> &middot;
        <a href="{{ unsubscribe_url }}" style="color:#6b7280">Unsubscribe</a></mj-text>
    </mj-column></mj-section>"""


def _mjml(heading: str, lead: str) -> str:
    return f"""<mjml>
  <mj-body background-color="#f3f4f6">
    <mj-section background-color="#ffffff" padding="28px 24px"><mj-column>
      <mj-text font-size="22px" line-height="28px" font-weight="700">{heading}</mj-text>
      <mj-text>{lead}</mj-text>
      <mj-text>{{{{ event_block() }}}}</mj-text>
      <mj-text>See you there,<br>{{{{ sender.name }}}}</mj-text>
    </mj-column></mj-section>{_FOOTER}
  </mj-body>
</mjml>"""


TEMPLATES = {
    EventMailKind.REMINDER: (
        "Tomorrow: {{ event.title }}",
        _mjml("See you tomorrow, {{ contact.first_name|default('there', true) }}",
              "A reminder: {{ event.title }} is on {{ event.when }}. Can't come after all? Tell us below and your "
              "place goes to someone on the waitlist."),
        "Hello {{ contact.first_name|default('there', true) }},\n\na reminder: {{ event.title }} is on "
        "{{ event.when }}.\n\n{{ event_block() }}\n{{ sender.name }}\n\nUnsubscribe: {{ unsubscribe_url }}\n"),
    EventMailKind.PROMOTED: (
        "A place freed up: you are in for {{ event.title }}",
        _mjml("Good news, {{ contact.first_name|default('there', true) }}: you have a place",
              "A place freed up for {{ event.title }} ({{ event.when }}) and it is yours. If you can no longer "
              "come, answer below so the next person on the waitlist gets it."),
        "Hello {{ contact.first_name|default('there', true) }},\n\na place freed up for {{ event.title }} "
        "({{ event.when }}) and it is yours.\n\n{{ event_block() }}\n{{ sender.name }}\n\n"
        "Unsubscribe: {{ unsubscribe_url }}\n"),
}


@dataclass
class MailResult:
    """What one run did: campaign ids created, people mailed by kind, stranded campaigns dispatched again."""

    campaigns: list[int] = field(default_factory=list)
    reminded: int = 0
    told: int = 0
    repaired: int = 0


def _new_campaign(session: Session, event: CalendarEvent, kind: EventMailKind, now: dt.datetime) -> Campaign:
    subject, mjml, text = TEMPLATES[kind]
    label = "Reminder" if kind == EventMailKind.REMINDER else "Place freed"
    campaign = Campaign(name=f"{label}: {event.title[:150]} ({now:%Y-%m-%d %H:%M} UTC)", kind=CampaignKind.NURTURE,
                        subject=subject, preheader=event.title[:200], mjml=mjml, text_body=text, all_contacts=True,
                        status=CampaignStatus.DRAFT)
    session.add(campaign)
    session.flush()
    session.add(EventMailing(campaign_id=campaign.id, event_id=event.id, kind=kind, created_at=now))
    return campaign


def _mark(session: Session, event: CalendarEvent, kind: EventMailKind, now: dt.datetime) -> tuple[int, list[int]]:
    """Create one campaign for everyone of the event due this kind of mail and mark them; (campaign id, contacts)."""
    column = EventReply.reminder_campaign_id if kind == EventMailKind.REMINDER else EventReply.notice_campaign_id
    due = [EventReply.event_id == event.id, column.is_(None)]
    if kind == EventMailKind.REMINDER:
        due.append(EventReply.answer.in_(REMINDED))
    else:
        due += [EventReply.answer == ReplyAnswer.YES.value, EventReply.promoted_at.is_not(None)]
    if session.scalar(select(EventReply.id).where(*due).limit(1)) is None:
        return 0, []
    campaign = _new_campaign(session, event, kind, now)
    contacts = list(session.scalars(update(EventReply).where(*due).values({column.key: campaign.id})
                                    .returning(EventReply.contact_id)
                                    .execution_options(synchronize_session=False)))
    return campaign.id, sorted(contacts)


def _stranded(session: Session) -> dict[int, list[int]]:
    """Campaigns created by an earlier run but never dispatched, with the people marked for them."""
    out: dict[int, list[int]] = {}
    for cid, kind in session.execute(select(EventMailing.campaign_id, EventMailing.kind)
                                     .join(Campaign, Campaign.id == EventMailing.campaign_id)
                                     .where(Campaign.status == CampaignStatus.DRAFT)):
        column = EventReply.reminder_campaign_id if kind == EventMailKind.REMINDER else EventReply.notice_campaign_id
        out[cid] = sorted(session.scalars(select(EventReply.contact_id).where(column == cid)))
    return out


def run(rt: Runtime, now: dt.datetime | None = None) -> MailResult:
    """Send the reminders that are due and tell everyone the waitlist moved up."""
    now = now or utcnow()
    result = MailResult()
    todo: list[tuple[int, list[int], EventMailKind]] = []
    with rt.session_factory() as session:
        stranded = _stranded(session)
        soon = list(session.scalars(select(CalendarEvent).where(CalendarEvent.starts_at > now,
                                                                CalendarEvent.starts_at <= now + REMIND_BEFORE)))
        promoted = list(session.scalars(select(CalendarEvent).where(CalendarEvent.id.in_(
            select(EventReply.event_id).where(EventReply.promoted_at.is_not(None),
                                              EventReply.notice_campaign_id.is_(None),
                                              EventReply.answer == ReplyAnswer.YES.value)))))
        for events, kind in ((soon, EventMailKind.REMINDER), (promoted, EventMailKind.PROMOTED)):
            for event in events:
                cid, contacts = _mark(session, event, kind, now)
                if cid:
                    todo.append((cid, contacts, kind))
        session.commit()
    for cid, contacts in stranded.items():
        result.repaired += dispatch_to(rt, cid, contacts)
    for cid, contacts, kind in todo:
        dispatch_to(rt, cid, contacts)
        result.campaigns.append(cid)
        if kind == EventMailKind.REMINDER:
            result.reminded += len(contacts)
        else:
            result.told += len(contacts)
        logger.info("event mail %s campaign_id=%s to %d contacts", kind.value, cid, len(contacts))
    return result
