"""An event's admin page with many answers (issue 16: 20,000 answers per event at 1,000,000 contacts): the answers
come a page at a time in their order (yes, the waitlist in its order, maybe, no), with the total and links on; the
attendance form saves what its page showed."""

from __future__ import annotations

import datetime as dt
import re

from campaigns.events import attendance
from campaigns.models import CalendarEvent, EventReply, utcnow
from tests.helpers import csrf, fresh


def test_answers_are_listed_a_page_at_a_time_in_order(editor, db_session, make_contacts, monkeypatch) -> None:
    _topic, contacts = make_contacts(5)
    event = CalendarEvent(title="Workshop", starts_at=utcnow() + dt.timedelta(days=5), place="Garden", capacity=2)
    db_session.add(event)
    db_session.flush()
    now = utcnow()
    # (answer, minute answered, minute put on the waitlist): the waitlist goes by the latter.
    answers = [("no", 0, None), ("yes", 1, None), ("waitlist", 2, 6), ("maybe", 3, None), ("waitlist", 4, 5)]
    for contact, (answer, minutes, waiting) in zip(contacts, answers, strict=True):
        db_session.add(EventReply(event_id=event.id, contact_id=contact.id, send_id=0, answer=answer,
                                  answered_at=now - dt.timedelta(minutes=10 - minutes),
                                  waiting_since=now - dt.timedelta(minutes=10 - waiting) if waiting else None))
    db_session.commit()
    monkeypatch.setattr(attendance, "PAGE", 2)

    def listed(page: int) -> list[str]:
        html = editor.get(f"/admin/events/{event.id}?page={page}").get_data(as_text=True)
        return re.findall(r"<tr><td>([^<]+)</td><td>(\w+)</td>", html), html

    first, html = listed(1)
    assert first == [(contacts[1].email, "yes"), (contacts[4].email, "waitlist")]
    assert "Answers 1–2 of 5" in html and "page=2" in html and 'rel="prev"' not in html
    second, html = listed(2)
    assert second == [(contacts[2].email, "waitlist"), (contacts[3].email, "maybe")]
    third, html = listed(3)
    assert third == [(contacts[0].email, "no")] and 'rel="next"' not in html
    assert listed(9)[0] == third                           # past the end: the last page

    # Attendance from page 1 changes the answers shown there only.
    ids = {r.contact_id: r.id for r, _c in attendance.invitees(db_session, event.id)}
    db_session.rollback()
    page = f"/admin/events/{event.id}?page=1"
    editor.post(f"/admin/events/{event.id}", data={"csrf_token": csrf(editor, page),
                                                   "shown": [ids[contacts[1].id], ids[contacts[4].id]],
                                                   "attended": [ids[contacts[1].id]]})
    came = {r.contact_id: r.attended for r in fresh(db_session).query(EventReply)}
    assert came == {contacts[0].id: None, contacts[1].id: True, contacts[2].id: None, contacts[3].id: None,
                    contacts[4].id: False}
