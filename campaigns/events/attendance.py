"""Answers and attendance: counts per answer, the list of invitees, marking who came, and the CSV export.
Functions here flush; whoever opened the session commits."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from campaigns.csvfiles import SafeWriter
from campaigns.events import service
from campaigns.models import CalendarEvent, Contact, EventReply, ReplyAnswer

ORDER = {ReplyAnswer.YES.value: 0, ReplyAnswer.WAITLIST.value: 1, ReplyAnswer.MAYBE.value: 2, ReplyAnswer.NO.value: 3}


@dataclass
class Figures:
    """An event's answers and attendance."""

    yes: int = 0
    no: int = 0
    maybe: int = 0
    waitlist: int = 0
    attended: int = 0
    no_show: int = 0
    capacity: int = 0
    remaining: int | None = None

    @property
    def answered(self) -> int:
        return self.yes + self.no + self.maybe + self.waitlist


def figures(session: Session, event: CalendarEvent) -> Figures:
    out = Figures(capacity=event.capacity, remaining=service.remaining(event))
    for answer, n in session.execute(select(EventReply.answer, func.count()).where(EventReply.event_id == event.id)
                                     .group_by(EventReply.answer)):
        if answer in ORDER:
            setattr(out, answer, n)
    for attended, n in session.execute(select(EventReply.attended, func.count())
                                       .where(EventReply.event_id == event.id, EventReply.attended.is_not(None))
                                       .group_by(EventReply.attended)):
        if attended:
            out.attended = n
        else:
            out.no_show = n
    return out


PAGE = 100      # invitees per page of the admin's list (an event may have tens of thousands of answers)


def _in_order(query):
    """Yes first, then the waitlist in its order, maybe, no; earlier answers first within each."""
    return query.order_by(case(ORDER, value=EventReply.answer, else_=9),
                          func.coalesce(EventReply.waiting_since, EventReply.answered_at), EventReply.id)


def invitees(session: Session, event_id: int, *, page: int | None = None) -> list[tuple[EventReply, Contact]]:
    """Everyone who answered, in order (see _in_order); with page (1-based), that page of PAGE answers only: the
    page's reply ids are chosen first, then only their contacts are read (never a join over every contact)."""
    answered = (EventReply.event_id == event_id, EventReply.answer != "")
    if page is None:
        return [(r, c) for r, c in session.execute(_in_order(
            select(EventReply, Contact).join(Contact, Contact.id == EventReply.contact_id).where(*answered)))]
    ids = list(session.scalars(_in_order(select(EventReply.id).where(*answered))
                               .offset((max(page, 1) - 1) * PAGE).limit(PAGE)))
    rows = {r.id: (r, c) for r, c in session.execute(select(EventReply, Contact).join(
        Contact, Contact.id == EventReply.contact_id).where(EventReply.id.in_(ids)))} if ids else {}
    return [rows[i] for i in ids if i in rows]


def mark(session: Session, event_id: int, attended: Iterable[int], present: Iterable[int]) -> int:
    """Mark attendance from the admin's list: of the reply ids shown (`present`), those in `attended` came, the
    others did not; returns the rows changed."""
    shown, came = {int(i) for i in present}, {int(i) for i in attended}
    changed = 0
    for value, ids in ((True, shown & came), (False, shown - came)):
        if ids:
            changed += session.execute(update(EventReply).where(
                EventReply.event_id == event_id, EventReply.id.in_(ids),
                EventReply.attended.is_(None) | (EventReply.attended != value))
                .values(attended=value).execution_options(synchronize_session=False)).rowcount
    session.flush()
    return changed


def csv_text(session: Session, event: CalendarEvent) -> str:
    """The invitees as CSV (cells that a spreadsheet would run as a formula are neutralised)."""
    sink = io.StringIO()
    writer = SafeWriter(sink)
    writer.writerow(["email", "first_name", "last_name", "answer", "answered_at", "attended"])
    for reply, contact in invitees(session, event.id):
        writer.writerow([contact.email, contact.first_name, contact.last_name, reply.answer, reply.answered_at,
                         "" if reply.attended is None else "yes" if reply.attended else "no"])
    return sink.getvalue()
