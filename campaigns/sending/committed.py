"""Work that must wait for the caller's commit: enqueueing a job that reads what this transaction writes.

A function handed a session never commits it (its caller owns the transaction); when it also has to enqueue a job
that reads the rows it wrote (a campaign's dispatch, its batches), it hands the enqueue to when_committed. The job
is enqueued right after the session's next commit, and dropped if the session rolls back instead, so no job ever
runs against rows that were not stored.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

PENDING = "rapport.after_commit"   # session.info key: callables waiting for the commit


def when_committed(session: Session, work: Callable[[], object]) -> None:
    """Run work once the session's current transaction commits (never, if it rolls back)."""
    if session.get_transaction() is None:
        session.begin()          # the transaction the work belongs to (a rollback of it drops the work)
    session.info.setdefault(PENDING, []).append(work)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for work in session.info.pop(PENDING, ()):
        work()


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:    # a savepoint rolled back leaves the transaction's work pending
        session.info.pop(PENDING, None)
