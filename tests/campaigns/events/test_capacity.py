"""Capacity is exact under concurrency: two people taking the last place at once, in two transactions — one gets
it, the other is waitlisted, whatever the interleaving (SQLite serialises writers; PostgreSQL re-checks the
conditional UPDATE after the first commits). Run with TEST_DATABASE_URL for PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from campaigns.events import replies, service
from campaigns.models import CalendarEvent, Contact, EventReply, ReplyAnswer
from tests.helpers import fresh


def _event(db_session, capacity: int) -> int:
    event = service.save(db_session, None, {"title": "Last seat", "starts_at": "2027-01-05T19:00",
                                            "zone": "Europe/Berlin", "capacity": str(capacity), "place": "Hall"})
    db_session.commit()
    return event.id


def _answer(session, event_id: int, contact_id: int, answer: ReplyAnswer) -> ReplyAnswer:
    invitation = replies.Invitation(session.get(CalendarEvent, event_id), session.get(Contact, contact_id),
                                    contact_id, None)
    invitation.reply = session.scalar(select(EventReply).where(EventReply.event_id == event_id,
                                                               EventReply.contact_id == contact_id))
    return replies.record(session, invitation, answer)


def _wait_for_lock(runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        time.sleep(0.3)          # SQLite: the second's BEGIN IMMEDIATE waits for the first's write lock
        return
    for _ in range(400):
        with runtime.engine.connect() as conn:
            if conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'")):
                return
        time.sleep(0.025)
    pytest.fail("the second answer never waited for the first")


def test_two_people_taking_the_last_place_at_once_one_gets_it_the_other_waits(runtime, db_session,
                                                                             make_contacts) -> None:
    _topic, contacts = make_contacts(3)
    event_id = _event(db_session, 2)
    with runtime.session_factory() as session:
        assert _answer(session, event_id, contacts[0].id, ReplyAnswer.YES) == ReplyAnswer.YES
        session.commit()
    first = runtime.session_factory()
    assert _answer(first, event_id, contacts[1].id, ReplyAnswer.YES) == ReplyAnswer.YES   # the last place, open
    outcome: list[object] = []

    def second() -> None:
        try:
            with runtime.session_factory() as session:
                outcome.append(_answer(session, event_id, contacts[2].id, ReplyAnswer.YES))
                session.commit()
        except BaseException as exc:   # reported below
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    _wait_for_lock(runtime)
    first.commit()
    first.close()
    thread.join(30)
    assert outcome == [ReplyAnswer.WAITLIST]
    event = fresh(db_session).get(CalendarEvent, event_id)
    assert (event.taken, event.capacity) == (2, 2)
    got = dict(db_session.execute(select(EventReply.contact_id, EventReply.answer)).all())
    assert sorted(got.values()) == ["waitlist", "yes", "yes"]
    db_session.rollback()


def test_many_at_once_never_overbook_and_a_freed_place_goes_to_the_first_in_line(runtime, db_session,
                                                                               make_contacts) -> None:
    _topic, contacts = make_contacts(8)
    event_id = _event(db_session, 3)
    results: dict[int, object] = {}
    start = threading.Barrier(len(contacts))

    def answer(contact_id: int) -> None:
        try:
            start.wait(10)
            with runtime.session_factory() as session:
                results[contact_id] = _answer(session, event_id, contact_id, ReplyAnswer.YES)
                session.commit()
        except BaseException as exc:
            results[contact_id] = exc

    threads = [threading.Thread(target=answer, args=(c.id,)) for c in contacts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(map(str, results.values())) == ["waitlist"] * 5 + ["yes"] * 3, results
    assert fresh(db_session).get(CalendarEvent, event_id).taken == 3
    waiting = list(db_session.scalars(select(EventReply).where(EventReply.answer == "waitlist")
                                      .order_by(EventReply.waiting_since, EventReply.id)))
    first_in_line = waiting[0].contact_id
    holder = next(cid for cid, r in results.items() if r == ReplyAnswer.YES)
    db_session.rollback()
    with runtime.session_factory() as session:
        assert _answer(session, event_id, holder, ReplyAnswer.NO) == ReplyAnswer.NO
        session.commit()
    replies_now = dict(fresh(db_session).execute(select(EventReply.contact_id, EventReply.answer)).all())
    assert replies_now[first_in_line] == "yes" and replies_now[holder] == "no"
    assert list(replies_now.values()).count("yes") == 3
    assert fresh(db_session).get(CalendarEvent, event_id).taken == 3
    # Saying yes again while waiting keeps one's place in the line.
    second_in_line = waiting[1].contact_id
    before = fresh(db_session).scalar(select(EventReply.waiting_since).where(
        EventReply.contact_id == second_in_line))
    db_session.rollback()
    with runtime.session_factory() as session:
        assert _answer(session, event_id, second_in_line, ReplyAnswer.YES) == ReplyAnswer.WAITLIST
        session.commit()
    assert fresh(db_session).scalar(select(EventReply.waiting_since).where(
        EventReply.contact_id == second_in_line)) == before
    db_session.rollback()
