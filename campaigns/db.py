"""Engine and session factory shared by the web app and the worker, and parse_id for ids that come as text."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# A naming convention keeps constraint names identical on SQLite and PostgreSQL, so Alembic migrations are stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


MAX_ID = 2**31 - 1       # INTEGER primary keys: PostgreSQL refuses a larger value in a comparison with one
MAX_BIG_ID = 2**63 - 1   # BigId primary keys (contacts, sends, events, audit entries…)


def parse_id(text: str | None, *, big: bool = False) -> int | None:
    """The database id text names (ASCII digits, at most MAX_ID, or MAX_BIG_ID with big=True), else None.

    Ids arrive as text from forms, query strings and cookies; anything else (signs, spaces, other digits than
    0-9, a number the column cannot hold) is no id, so a lookup with it finds nothing instead of failing.
    """
    if not text or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= (MAX_BIG_ID if big else MAX_ID) else None


class Base(DeclarativeBase):
    """Declarative base for every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def normalize_url(url: str) -> str:
    """postgres:// and postgresql:// (as hosting providers write them) name the psycopg 3 driver explicitly."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of server_url, dropped afterwards (tests, benchmarks)."""
    server = make_url(normalize_url(server_url))
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_engine(url: str, *, immediate: bool = True, **kwargs: object) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so the web app and workers can share the file.

    immediate=False leaves SQLite transactions deferred: for an observer that only reads (tests, reports).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # Let SQLAlchemy emit BEGIN itself (pysqlite's own transaction handling defers it and breaks
            # BEGIN IMMEDIATE, which the sender needs for atomic claims).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # IMMEDIATE takes the write lock up front and waits for it (busy_timeout). A deferred transaction
            # that reads and later writes fails at once with "database is locked" if another process committed
            # in between, whatever the timeout: the web app and the workers share this file.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory; expire_on_commit=False so jobs can read attributes after committing."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
