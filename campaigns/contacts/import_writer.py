"""CSV import, the writes: one chunk of validated rows goes to the database in a few bulk statements.

Each chunk is one transaction: dedupe within the chunk, drop suppressed addresses, look up existing contacts,
insert the new ones, update (or skip) the existing ones, link interests and topics, commit.

New contacts bypass the ORM's per-row parameter processing, which cost more than the database itself: values are
serialised once into tuples in column order, then written with the driver's executemany on SQLite, and with COPY
into a temporary table followed by INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.contacts.import_mapping import Column, Mode, Row
from campaigns.contacts.import_upload import ErrorReport
from campaigns.contacts.suppression import email_hash
from campaigns.models import Contact, ContactInterest, ContactStatus, Frequency, Subscription, utcnow
from campaigns.webhook_events import EventType

logger = logging.getLogger(__name__)

# Contact columns an import row can fill (everything else gets the same value for every new contact).
ROW_COLUMNS = ("email", "first_name", "last_name", "phone", "address_line1", "address_line2", "city", "region",
               "postal_code", "country", "birthday", "timezone", "locale", "attributes")
_STAGE = "rapport_import_stage"
IMPORT_CACHE_KB = 64 * 1024


@dataclass
class Counts:
    """Running totals of an import."""

    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: int = 0


class ChunkWriter:
    """Writes chunks of validated rows with a few bulk statements, one transaction per chunk.

    It owns its session, pinned to the connection it is given, so per-connection settings hold for the whole
    import; close() ends it.
    """

    def __init__(self, connection: Connection, mapping: list[Column], mode: str, consent: str,
                 topic_ids: dict[str, int]) -> None:
        session = Session(bind=connection, expire_on_commit=False)
        self.session, self.mode, self.consent, self.topic_ids = session, mode, consent, topic_ids
        self.dialect = connection.dialect
        self.postgres = self.dialect.name == "postgresql"
        self.has_attributes = any(c.target == "attribute" for c in mapping)
        self._cache_size: int | None = None
        if not self.postgres:
            # A larger page cache for this connection while it imports: the email index of a million contacts
            # outgrows SQLite's 2 MB default, and every insert then rereads index pages. Restored by close().
            conn = session.connection()
            self._cache_size = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            conn.exec_driver_sql(f"PRAGMA cache_size=-{IMPORT_CACHE_KB}")
            session.commit()

    def rollback(self) -> None:
        """Drop the chunk in progress (the import failed)."""
        self.session.rollback()

    def close(self) -> None:
        """Give the connection its usual page cache back (a failed import's session may be unusable: skip), and
        end the session."""
        if self._cache_size is not None:
            try:
                self.session.rollback()
                self.session.connection().exec_driver_sql(f"PRAGMA cache_size={int(self._cache_size)}")
                self.session.commit()
            except SQLAlchemyError:
                logger.warning("could not restore the page cache size after an import", exc_info=True)
            self._cache_size = None
        self.session.close()

    # ------------------------------------------------------------ one chunk

    def write(self, chunk: list[tuple[list[str], Row]], counts: Counts, report: ErrorReport) -> None:
        """Write one chunk of (original cells, converted row) and commit."""
        if not chunk:
            return
        conn = self.session.connection()        # begins the chunk's transaction (BEGIN IMMEDIATE on SQLite)
        # The last of several rows for one address wins; the earlier ones are reported as skipped.
        by_email: dict[str, tuple[list[str], Row]] = {}
        for raw, row in chunk:
            email = row.values["email"]
            previous = by_email.get(email)
            if previous is not None:
                counts.skipped += 1
                counts.errors += 1
                report.add(previous[0], "skipped: the same address appears again further down")
            by_email[email] = (raw, row)
        hashes = {email_hash(e): e for e in by_email}
        for h in self._column_in(conn, "suppression", "email_hash", "email_hash", list(hashes)):
            raw, _row = by_email.pop(hashes[h[0]])
            counts.skipped += 1
            counts.errors += 1
            report.add(raw, "skipped: suppressed (bounced, complained or unsubscribed for good)")
        now = utcnow()
        # Insert first: ON CONFLICT leaves out every address that is a contact already, so a fresh import costs
        # no lookup of its addresses; only the rows left over are looked up (to update them) or skipped.
        created = self._insert_contacts(conn, [(email, row) for email, (_raw, row) in by_email.items()], now)
        counts.created += len(created)
        rest = [email for email in by_email if email not in created]
        updates: list[dict[str, Any]] = []
        ids: dict[str, int] = {}
        if rest and self.mode == Mode.SKIP:
            counts.skipped += len(rest)
        elif rest:
            existing = {email: (cid, attrs) for email, cid, attrs in
                        self._column_in(conn, "contact", "email, id, attributes", "email", rest)}
            for email in rest:
                raw, row = by_email[email]
                found = existing.get(email)
                if found is None:       # PostgreSQL: deleted by another session since our insert saw it
                    counts.skipped += 1
                    counts.errors += 1
                    report.add(raw, "skipped: the contact was deleted elsewhere during the import")
                    continue
                cid, attrs = found
                ids[email] = cid
                # A blank cell never erases what we already know about an existing contact.
                values = {k: v for k, v in row.values.items() if k != "email" and v not in ("", None)}
                if self.has_attributes:
                    if isinstance(attrs, str):
                        attrs = json.loads(attrs)
                    values["attributes"] = {**(attrs or {}), **row.attributes}
                values["id"] = cid
                values["updated_at"] = now
                updates.append(values)
        if updates:
            # Rows differ in which keys they carry, so one executemany per key set.
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for values in updates:
                groups.setdefault(tuple(sorted(values)), []).append(values)
            for group in groups.values():
                self.session.execute(update(Contact), group)
            counts.updated += len(updates)
        self._link(conn, by_email, created, ids, now)
        self._hooks(by_email, created, ids)
        self.session.commit()

    def _hooks(self, by_email: dict[str, tuple[list[str], Row]], created: dict[str, int],
               updated: dict[str, int]) -> None:
        """contact.created / contact.updated webhooks of this chunk: nothing is built unless an endpoint wants them
        (a million-row import writes a million outbox rows only for a subscriber)."""
        for type_, ids in ((EventType.CONTACT_CREATED, created), (EventType.CONTACT_UPDATED, updated)):
            if ids:
                webhook_events.record_many(self.session, type_, (
                    ({"contact": {"id": cid, "email": email,
                                  **{k: v for k, v in by_email[email][1].values.items() if k != "email"}},
                      "source": "import",
                      **({"changed": sorted(k for k, v in by_email[email][1].values.items()
                                            if k != "email" and v not in ("", None))}
                         if type_ is EventType.CONTACT_UPDATED else {})}, False)
                    for email, cid in ids.items()))

    # ------------------------------------------------------------ new contacts

    def _constants(self, now: Any) -> dict[str, Any]:
        """Values every new contact of this chunk shares, including Python-side defaults of columns added later."""
        values: dict[str, Any] = {
            "status": ContactStatus.SUBSCRIBED.value, "consent_source": self.consent, "consent_at": now,
            "created_at": now, "updated_at": now, "engagement_score": 0.0, "frequency": Frequency.EVERY.value}
        for col in Contact.__table__.columns:
            if col.name in values or col.name in ROW_COLUMNS or col.primary_key or col.default is None:
                continue
            default = col.default
            if default.is_scalar:
                values[col.name] = default.arg
            elif default.is_callable:
                values[col.name] = default.arg(None)
        return values

    def _bind(self, name: str, value: Any) -> Any:
        """A value as the driver takes it (SQLite: the same text SQLAlchemy would store; PostgreSQL: native)."""
        if self.postgres:
            return json.dumps(value) if isinstance(value, dict | list) else value
        processor = Contact.__table__.c[name].type._cached_bind_processor(self.dialect)
        return processor(value) if processor else value

    def _insert_contacts(self, conn: Connection, rows: list[tuple[str, Row]], now: Any) -> dict[str, int]:
        """Insert new contacts; returns {email: id} of those inserted (an address that exists by now is left)."""
        if not rows:
            return {}
        constants = {name: self._bind(name, value) for name, value in self._constants(now).items()}
        postgres = self.postgres
        empty = "{}"
        tuples = []
        for email, row in rows:
            values = row.values
            birthday = values.get("birthday")
            if birthday is not None and not postgres:
                birthday = birthday.isoformat()
            tuples.append((
                email, values.get("first_name", ""), values.get("last_name", ""), values.get("phone", ""),
                values.get("address_line1", ""), values.get("address_line2", ""), values.get("city", ""),
                values.get("region", ""), values.get("postal_code", ""), values.get("country", ""), birthday,
                values.get("timezone") or "UTC", values.get("locale") or "en",
                _json_object(row.attributes) if row.attributes else empty))
        row_names = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
        names = ", ".join([row_names, *(f'"{c}"' for c in constants)])
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if postgres:
                # Only the per-row columns go through COPY; the shared values are parameters of the INSERT.
                cursor.execute(f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {row_names} FROM contact "
                               "WITH NO DATA")
                with cursor.copy(f"COPY {_STAGE} ({row_names}) FROM STDIN") as copy:
                    for values in tuples:
                        copy.write_row(values)
                shared = ", ".join(["%s"] * len(constants))
                cursor.execute(f"INSERT INTO contact ({names}) SELECT {row_names}, {shared} FROM {_STAGE} "
                               "ON CONFLICT (email) DO NOTHING RETURNING email, id", tuple(constants.values()))
                return dict(cursor.fetchall())
            # SQLite: this transaction holds the write lock, so the new rows are exactly those above the old max id.
            cursor.execute("SELECT coalesce(max(id), 0) FROM contact")
            (before,) = cursor.fetchone()
            tail = tuple(constants.values())
            marks = ", ".join("?" * (len(ROW_COLUMNS) + len(tail)))
            cursor.executemany(f"INSERT INTO contact ({names}) VALUES ({marks}) ON CONFLICT (email) DO NOTHING",
                               [values + tail for values in tuples])
            cursor.execute("SELECT email, id FROM contact WHERE id > ?", (before,))
            return dict(cursor.fetchall())
        finally:
            cursor.close()

    # ------------------------------------------------------------ interests and topics

    def _link(self, conn: Connection, by_email: dict[str, tuple[list[str], Row]], created: dict[str, int],
              existing: dict[str, int], now: Any) -> None:
        """Add interests and topic subscriptions of new and updated contacts (never undoing an unsubscribe)."""
        fresh_interests, old_interests, fresh_subs, old_subs = [], [], [], []
        subscribed = True if self.postgres else 1
        stamp = now if self.postgres else self._bind("updated_at", now)
        for email, (_raw, row) in by_email.items():
            if not row.interests and not row.topics:
                continue
            cid = created.get(email)
            fresh = cid is not None
            if cid is None:
                cid = existing.get(email)
                if cid is None:
                    continue                 # skipped
            interests = fresh_interests if fresh else old_interests
            for interest in set(row.interests):
                interests.append((cid, interest))
            subs = fresh_subs if fresh else old_subs
            for topic in set(row.topics):
                subs.append((cid, self.topic_ids[topic], subscribed, stamp))
        interest_table, sub_table = ContactInterest.__tablename__, Subscription.__tablename__
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if self.postgres:
                # New contacts cannot have links yet, so COPY them; an existing contact's may exist already.
                self._copy(cursor, interest_table, ("contact_id", "interest"), fresh_interests)
                self._copy(cursor, sub_table, ("contact_id", "topic_id", "subscribed", "updated_at"), fresh_subs)
            else:
                old_interests += fresh_interests
                old_subs += fresh_subs
            mark = "%s" if self.postgres else "?"
            if old_interests:
                cursor.executemany(f"INSERT INTO {interest_table} (contact_id, interest) VALUES ({mark}, {mark}) "
                                   "ON CONFLICT DO NOTHING", old_interests)
            if old_subs:
                # An existing unsubscribe is the contact's choice: an import never overrides it.
                cursor.executemany(f"INSERT INTO {sub_table} (contact_id, topic_id, subscribed, updated_at) "
                                   f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT DO NOTHING", old_subs)
        finally:
            cursor.close()

    @staticmethod
    def _copy(cursor: Any, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
        rows = list(rows)
        if rows:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for values in rows:
                    copy.write_row(values)

    # ------------------------------------------------------------ lookups

    def _column_in(self, conn: Connection, table: str, columns: str, key: str, values: list[str]) -> list[tuple]:
        """SELECT columns FROM table WHERE key IN values, through the driver (one statement per chunk)."""
        if not values:
            return []
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if self.postgres:
                # One text parameter split by the server: psycopg would dump a list element by element in Python.
                cursor.execute(f"SELECT {columns} FROM {table} WHERE {key} = ANY(string_to_array(%s, chr(10)))",
                               ("\n".join(values),))
            else:
                cursor.execute(f"SELECT {columns} FROM {table} WHERE {key} IN ({', '.join('?' * len(values))})",
                               values)
            return cursor.fetchall()
        finally:
            cursor.close()


def _json_object(values: dict[str, str]) -> str:
    """json.dumps of a flat {str: str} dict, byte for byte, without building an encoder per call."""
    return "{" + ", ".join(f"{encode_basestring_ascii(k)}: {encode_basestring_ascii(v)}"
                           for k, v in values.items()) + "}"
