"""Answering an invitation: yes / no / maybe, exact under concurrency, and the waitlist.

A place is taken only by a conditional UPDATE (`taken = taken + 1 WHERE taken < capacity`): two people taking the
last place at once each run it, the database serialises the row, and exactly one matches — the other is put on the
waitlist. Someone who held a place and answers no or maybe frees it, and the first on the waitlist (by when they
asked) is promoted in the same transaction; campaigns.events.mailings tells them by mail.
Functions here flush; the view that opened the session commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.errors import NotFound, ValidationError
from campaigns.events import service
from campaigns.models import CalendarEvent, Contact, Event, EventReply, EventType, ReplyAnswer, Send, utcnow

ANSWERS = (ReplyAnswer.YES, ReplyAnswer.NO, ReplyAnswer.MAYBE)       # what a person may choose; code = index + 1
HOLDS_PLACE = ReplyAnswer.YES.value


@dataclass
class Invitation:
    """One invitee of one event, from the message that reached them."""

    event: CalendarEvent
    contact: Contact
    send_id: int
    reply: EventReply | None


def answer_of_code(code: int) -> ReplyAnswer | None:
    """The answer a link's code stands for (0 and unknown codes: none)."""
    return ANSWERS[code - 1] if 1 <= code <= len(ANSWERS) else None


def code_of(answer: str) -> int:
    """The link code of an answer; raises ValueError."""
    return [a.value for a in ANSWERS].index(str(answer).strip().lower()) + 1


def open_invitation(session: Session, send_id: int) -> Invitation:
    """The event a sent message carried, for its recipient; NotFound when the message, contact or event is gone."""
    send = session.get(Send, send_id)
    event = service.for_campaign(session, send.campaign_id) if send is not None else None
    if send is None or event is None:
        raise NotFound("this invitation is no longer on file")
    contact = session.get(Contact, send.contact_id)
    if contact is None:
        raise NotFound("this invitation is no longer on file")
    reply = session.scalar(select(EventReply).where(EventReply.event_id == event.id,
                                                    EventReply.contact_id == contact.id))
    return Invitation(event, contact, send_id, reply)


def parse_answer(raw: object) -> ReplyAnswer:
    text = str(raw or "").strip().lower()
    for answer in ANSWERS:
        if text == answer.value:
            return answer
    raise ValidationError("Please choose yes, no or maybe.")


def _take_place(session: Session, event_id: int) -> bool:
    """Take one place if one is left (always, without a limit): the conditional UPDATE that makes capacity exact."""
    result = session.execute(update(CalendarEvent).where(
        CalendarEvent.id == event_id,
        (CalendarEvent.capacity == 0) | (CalendarEvent.taken < CalendarEvent.capacity))
        .values(taken=CalendarEvent.taken + 1).execution_options(synchronize_session=False))
    return result.rowcount == 1


def _free_place(session: Session, event_id: int) -> None:
    session.execute(update(CalendarEvent).where(CalendarEvent.id == event_id, CalendarEvent.taken > 0)
                    .values(taken=CalendarEvent.taken - 1).execution_options(synchronize_session=False))


def _locked_reply(session: Session, invitation: Invitation) -> tuple[EventReply, str]:
    """The invitee's reply row, locked (created empty when new), and their answer before this one ("" if none)."""
    event_id, contact_id = invitation.event.id, invitation.contact.id
    query = select(EventReply).where(EventReply.event_id == event_id, EventReply.contact_id == contact_id)
    if invitation.reply is None:
        try:
            with session.begin_nested():
                session.add(EventReply(event_id=event_id, contact_id=contact_id, send_id=invitation.send_id,
                                       answer="", answered_at=utcnow()))
        except IntegrityError:      # the same person answered at the same moment (a double click)
            pass
    reply = session.scalar(query.with_for_update().execution_options(populate_existing=True))
    return reply, reply.answer


def promote(session: Session, event_id: int) -> list[int]:
    """Give freed places to the waitlist in order; returns the contact ids promoted."""
    promoted: list[int] = []
    while True:
        first = session.scalar(select(EventReply).where(EventReply.event_id == event_id,
                                                        EventReply.answer == ReplyAnswer.WAITLIST.value)
                               .order_by(EventReply.waiting_since, EventReply.id).limit(1)
                               .with_for_update().execution_options(populate_existing=True))
        if first is None or not _take_place(session, event_id):
            break
        first.answer, first.promoted_at, first.waiting_since = ReplyAnswer.YES, utcnow(), None
        first.notice_campaign_id = None
        session.add(Event(contact_id=first.contact_id, type=EventType.EVENT_REPLY, occurred_at=first.promoted_at,
                          data={"event_id": event_id, "answer": ReplyAnswer.YES.value, "source": "waitlist",
                                "title": session.scalar(select(CalendarEvent.title)
                                                        .where(CalendarEvent.id == event_id))}))
        session.flush()
        promoted.append(first.contact_id)
    return promoted


def record(session: Session, invitation: Invitation, answer: ReplyAnswer) -> ReplyAnswer:
    """Record an answer; returns what the person now has (yes, no, maybe, or waitlist when they said yes to a full
    event). Answering yes again while waiting keeps their place in the line."""
    if answer not in ANSWERS:
        raise ValidationError("Please choose yes, no or maybe.")
    reply, before = _locked_reply(session, invitation)
    event_id = invitation.event.id
    now = utcnow()
    if answer == ReplyAnswer.YES:
        if before in (ReplyAnswer.YES.value, ReplyAnswer.WAITLIST.value):
            outcome = ReplyAnswer(before)
        elif _take_place(session, event_id):
            outcome = ReplyAnswer.YES
        else:
            outcome = ReplyAnswer.WAITLIST
            reply.waiting_since = now
    else:
        outcome = answer
        reply.waiting_since = None
    if before != outcome.value:
        reply.answer, reply.answered_at, reply.send_id = outcome, now, invitation.send_id
        send = session.get(Send, invitation.send_id) if invitation.send_id else None
        session.add(Event(contact_id=invitation.contact.id, campaign_id=send.campaign_id if send else None,
                          send_id=send.id if send else None, type=EventType.EVENT_REPLY, occurred_at=now,
                          data={"event_id": event_id, "title": invitation.event.title, "answer": outcome.value}))
    session.flush()
    if before == HOLDS_PLACE and outcome != ReplyAnswer.YES:
        _free_place(session, event_id)
        promote(session, event_id)
    session.refresh(invitation.event)
    invitation.reply = reply
    return outcome


def waitlist_position(session: Session, reply: EventReply) -> int:
    """1 for the first in line."""
    if reply.answer != ReplyAnswer.WAITLIST or reply.waiting_since is None:
        return 0
    ahead = session.scalars(select(EventReply.id).where(
        EventReply.event_id == reply.event_id, EventReply.answer == ReplyAnswer.WAITLIST.value,
        (EventReply.waiting_since < reply.waiting_since)
        | ((EventReply.waiting_since == reply.waiting_since) & (EventReply.id < reply.id)))).all()
    return len(ahead) + 1
