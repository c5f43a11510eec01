"""Send rows without foreign keys: a deleted contact or campaign takes its send rows along, a dispatch chunk's
plain INSERT falls back to ignoring conflicts, and on PostgreSQL an erase racing a dispatch chunk leaves no send
row naming the erased contact (campaigns.sending.sendrows, migration 0032)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import delete, func, literal, select, text

from campaigns.contacts.exports import erase_contact
from campaigns.models import Campaign, Contact, Send, SendStatus, utcnow
from campaigns.sending import lifecycle as sending
from campaigns.sending import sendrows


def _rows(campaign_id: int, *conds):
    return select(literal(campaign_id), Contact.id, literal(SendStatus.QUEUED.value), literal(0), literal(""),
                  literal(utcnow())).where(*conds)


def _sends(db_session, **by) -> set[int]:
    db_session.rollback()
    q = select(Send.contact_id)
    for name, value in by.items():
        q = q.where(getattr(Send, name) == value)
    return set(db_session.scalars(q))


def test_deleting_a_contact_or_a_campaign_deletes_its_send_rows(runtime, db_session, make_contacts,
                                                                make_campaign) -> None:
    topic, contacts = make_contacts(6)
    first, second = make_campaign([topic]), make_campaign([topic])
    for campaign in (first, second):
        sending.start(db_session, runtime, campaign)
        db_session.commit()
        assert sending.dispatch(runtime, campaign.id) == 6
    gone = contacts[2].id
    # A plain DELETE, not the erase (which deletes the sends itself): the schema's trigger does it.
    db_session.execute(delete(Contact).where(Contact.id == gone))
    db_session.commit()
    everyone = {c.id for c in contacts}
    assert _sends(db_session, campaign_id=first.id) == everyone - {gone}
    assert _sends(db_session, campaign_id=second.id) == everyone - {gone}
    db_session.execute(delete(Campaign).where(Campaign.id == first.id))
    db_session.commit()
    assert _sends(db_session, campaign_id=first.id) == set()
    assert _sends(db_session, campaign_id=second.id) == everyone - {gone}


def test_a_plain_insert_that_meets_existing_rows_falls_back_to_ignoring_them(runtime, db_session, make_contacts,
                                                                            make_campaign) -> None:
    topic, contacts = make_contacts(5)
    campaign = make_campaign([topic])
    ids = sorted(c.id for c in contacts)
    db_session.add(Send(campaign_id=campaign.id, contact_id=ids[2], status=SendStatus.QUEUED))
    db_session.commit()
    with runtime.session_factory() as session:
        # The range said to be empty is not the one the rows come from: the plain INSERT meets ids[2] and the unique
        # key refuses it; the rows go in again ignoring the conflict, in the same transaction.
        fresh = (campaign.id, ids[-1] + 100, ids[-1] + 200)
        assert sendrows.insert(session, _rows(campaign.id, Contact.id.in_(ids)), fresh_range=fresh) == 4
        session.commit()
        # A range that holds rows takes the ON CONFLICT path at once.
        assert sendrows.insert(session, _rows(campaign.id, Contact.id.in_(ids)),
                               fresh_range=(campaign.id, ids[0] - 1, ids[-1])) == 0
        session.commit()
    rows = db_session.execute(select(Send.contact_id, func.count()).where(Send.campaign_id == campaign.id)
                              .group_by(Send.contact_id)).all()
    assert sorted(rows) == [(i, 1) for i in ids]


def _waiting_for_the_lock(runtime, seconds: float = 20.0) -> bool:
    """Whether another session waits for an advisory lock (polled; PostgreSQL's own view of its lock queue)."""
    deadline = time.monotonic() + seconds
    with runtime.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                       "AND objid = :k"), {"k": sendrows.CONTACT_SENDS_LOCK})
            conn.rollback()
            if waiting:
                return True
            time.sleep(0.02)
    return False


@pytest.mark.parametrize("first", ["dispatch", "erase"])
def test_an_erase_racing_a_dispatch_chunk_leaves_no_send_naming_the_contact(runtime, db_session, make_contacts,
                                                                           make_campaign, first) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: an erase and a dispatch chunk cannot overlap")
    topic, contacts = make_contacts(4)
    campaign = make_campaign([topic])
    ids = sorted(c.id for c in contacts)
    victim = ids[1]
    errors: list[BaseException] = []

    def in_thread(work) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)
        t = threading.Thread(target=run)
        t.start()
        return t

    chunk = runtime.session_factory()
    eraser = runtime.session_factory()
    try:
        if first == "dispatch":
            # The chunk has read the contact and written its row, not committed: the erase waits for it, then
            # deletes that row too.
            assert sendrows.insert(chunk, _rows(campaign.id, Contact.id.in_(ids))) == 4

            def erase() -> None:
                erase_contact(eraser, victim)
                eraser.commit()
            t = in_thread(erase)
            assert _waiting_for_the_lock(runtime)
            chunk.commit()
        else:
            # The erase has deleted the contact, not committed: the chunk waits, then no longer sees the contact.
            erase_contact(eraser, victim)

            def insert() -> None:
                sendrows.insert(chunk, _rows(campaign.id, Contact.id.in_(ids)))
                chunk.commit()
            t = in_thread(insert)
            assert _waiting_for_the_lock(runtime)
            eraser.commit()
        t.join(30)
        assert not t.is_alive() and not errors, errors
    finally:
        chunk.close()
        eraser.close()
    assert _sends(db_session, campaign_id=campaign.id) == set(ids) - {victim}
    assert db_session.scalar(select(func.count()).select_from(Contact).where(Contact.id == victim)) == 0
