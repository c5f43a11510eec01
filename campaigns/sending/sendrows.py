"""Send rows name a campaign and a contact without foreign keys; what the keys did is done here and in the schema.

PostgreSQL checked both keys per inserted row (an after-row trigger that share-locks the campaign row and writes a
lock into every contact tuple): half the time of a 1,000,000-row dispatch (docs/benchmarks.md). Migration 0032
replaced them with statement-level triggers that delete a deleted contact's or campaign's send rows (the cascade
the keys had), and this lock keeps a send row from naming a contact that a concurrent erase removed:

* every statement that inserts send rows for contacts it read runs in a transaction that first takes the lock
  shared (`for_new_rows`, before the statement's snapshot is taken);
* the trigger on contact deletes takes it exclusively before it deletes the contacts' send rows.

So an erase waits for inserts already under way and then deletes their rows too, and an insert that starts while an
erase holds the lock waits for it to commit and no longer sees the contact. SQLite needs none of it: one writer at a
time, and its triggers run in the deleting transaction.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.models import Send

# pg_advisory_xact_lock key; migration 0032's trigger function names the same number.
CONTACT_SENDS_LOCK = 727_001_032


def for_new_rows(session: Session) -> None:
    """Take the send-row lock shared for the rest of the session's transaction (PostgreSQL; a no-op on SQLite).

    Call it before the statement that reads contacts and inserts their send rows, in the same transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": CONTACT_SENDS_LOCK})


def insert(session: Session, rows, *, scheduled: bool = False, with_variant: bool = False,
           fresh_range: tuple[int, int, int] | None = None) -> int:
    """INSERT … SELECT send rows from `rows` (campaign, contact, status, attempts, last_error, created_at[,
    not_before, next_attempt_at][, variant]); returns how many were new. Takes the lock first (for_new_rows).

    Rows that exist already are left alone (ON CONFLICT DO NOTHING) — unless fresh_range = (campaign id, after,
    upto) says the campaign has no send row in that contact range yet (checked here, one index probe): then a plain
    INSERT, which PostgreSQL does a third faster than a speculative one. Should a concurrent insert for the same
    range win the race after all, the unique key refuses the plain INSERT and it is done again ignoring conflicts,
    inside a savepoint so the caller's transaction goes on.
    """
    for_new_rows(session)
    cols = ["campaign_id", "contact_id", "status", "attempts", "last_error", "created_at"] + \
        (["not_before", "next_attempt_at"] if scheduled else []) + (["variant"] if with_variant else [])
    pg = session.get_bind().dialect.name == "postgresql"
    dialect_insert = postgresql.insert if pg else sqlite.insert
    if fresh_range is not None:
        campaign_id, after, upto = fresh_range
        taken = session.scalar(select(Send.id).where(Send.campaign_id == campaign_id, Send.contact_id > after,
                                                     Send.contact_id <= upto).limit(1))
        if taken is None:
            try:
                with session.begin_nested():
                    return _count(session, dialect_insert(Send.__table__).from_select(cols, rows))
            except IntegrityError:
                pass
    stmt = dialect_insert(Send.__table__).from_select(cols, rows)
    return _count(session, stmt.on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"]))


def _count(session: Session, stmt) -> int:
    # preserve_rowcount: SQLAlchemy keeps an INSERT's cursor.rowcount only when asked.
    return max(session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount or 0, 0)
