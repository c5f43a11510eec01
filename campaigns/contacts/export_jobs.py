"""Contact exports as background jobs: a CSV file (optionally gzip) in the shared storage (campaigns.storage, key
exports/…, so web and workers on different machines see it), written by a worker with progress, downloaded from the
admin when done, and deleted after Settings.export_keep_hours.

PostgreSQL writes the rows with one COPY (SELECT …) TO STDOUT; SQLite streams one SELECT of text cells. Both format
the cells in SQL (exports.CSV_FIELDS, then interests, topics and attributes) and make them safe against spreadsheet
formulas, so no ORM object is built per contact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import logging
import secrets
import time
from collections.abc import Iterator
from enum import StrEnum
from typing import IO, Any

from sqlalchemy import ColumnElement, literal_column, select
from sqlalchemy.orm import Session

from campaigns import csvfiles, queueing, storage
from campaigns.contacts import birthdays, segments
from campaigns.contacts.exports import CSV_FIELDS
from campaigns.csvfiles import safe_cell
from campaigns.errors import NotFound, ValidationError
from campaigns.models import Contact, ContactStatus, Subscription, Topic
from campaigns.queueing import Job
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)


class ExportState(StrEnum):
    """Where an export job stands (the "state" of its JSON in Redis)."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


STATE = "rapport:export:{}"
RECENT = "rapport:exports"          # sorted set: export id -> time requested
PAGE = 5000
PROGRESS_EVERY = 0.5        # seconds between progress updates in Redis
HEADER = [*CSV_FIELDS, "interests", "topics", "attributes"]


FOLDER = "exports/"


def export_key(export_id: str, gzipped: bool) -> str:
    """The storage key of an export's file (campaigns.storage: shared by web and workers on any machine)."""
    return f"{FOLDER}{export_id}.csv{'.gz' if gzipped else ''}"


def _valid_id(export_id: str) -> bool:
    return 8 <= len(export_id) <= 40 and export_id.replace("-", "").replace("_", "").isalnum()


def start(rt: Runtime, session: Session, *, status: str = "", topic_id: int | None = None,
          segment_id: int | None = None, gzipped: bool = False, requested_by: str = "") -> str:
    """Check the filters, record the export as queued and enqueue its job; returns the export id."""
    if status and status not in set(ContactStatus):
        raise ValidationError(f"unknown status {status!r}", field="status")
    if topic_id is not None and session.get(Topic, topic_id) is None:
        raise ValidationError("that topic does not exist", field="topic")
    if segment_id is not None:
        segment = segments.get_segment(session, segment_id)
        segments.condition(session, segment.definition)     # refuse one that cannot be evaluated, now
    export_id = secrets.token_hex(12)   # a storage key segment: letters and digits only
    state = {"id": export_id, "state": ExportState.QUEUED, "rows": 0, "status": status, "topic_id": topic_id,
             "segment_id": segment_id, "gzip": gzipped, "requested_by": requested_by, "requested_at": time.time(),
             "error": ""}
    _save(rt, state)
    rt.redis.zadd(RECENT, {export_id: state["requested_at"]})
    queueing.enqueue(rt.queue, Job.EXPORT_CONTACTS, export_id)
    return export_id


def get(rt: Runtime, export_id: str) -> dict[str, Any]:
    """An export's state: queued, running (rows so far), finished (rows, seconds) or failed (error)."""
    raw = rt.redis.get(STATE.format(export_id)) if _valid_id(export_id) else None
    if raw is None:
        raise NotFound("no such export (exports are deleted after a while)")
    return json.loads(raw)


def file_of(rt: Runtime, export_id: str) -> tuple[IO[bytes], bool]:
    """The finished export's file, opened from the shared storage, and whether it is gzip."""
    state = get(rt, export_id)
    if state["state"] != ExportState.FINISHED:
        raise NotFound("this export has no file (not finished yet, or deleted)")
    try:
        return storage.for_settings(rt.settings).open(export_key(export_id, state["gzip"])), state["gzip"]
    except FileNotFoundError:
        raise NotFound("this export has no file (deleted after a while)") from None


def _save(rt: Runtime, state: dict[str, Any]) -> None:
    rt.redis.set(STATE.format(state["id"]), json.dumps(state), ex=rt.settings.export_keep_hours * 3600)


def run(rt: Runtime, export_id: str) -> dict[str, Any]:
    """Write the export's file (the job's work); the file appears under its final name only when complete."""
    state = get(rt, export_id)
    state.update(state=ExportState.RUNNING, started_at=time.time())
    _save(rt, state)
    files = storage.for_settings(rt.settings)
    key = export_key(export_id, state["gzip"])
    last = [time.monotonic()]

    def progress(rows: int) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY:
            last[0] = time.monotonic()
            state["rows"] = rows
            _save(rt, state)

    try:
        with rt.read_session_factory() as session:
            conds = _conditions(session, state)
            with files.create(key) as raw, _compressed(raw, state["gzip"]) as out:
                out.write("\ufeff".encode())       # for Excel
                out.write(_line(HEADER))
                if session.get_bind().dialect.name == "postgresql":
                    rows = _copy_postgresql(session, conds, out, progress)
                else:
                    rows = _write_pages(session, conds, out, progress)
    except Exception as exc:
        files.delete(key)       # a partial file is never offered (the state says failed too)
        state.update(state=ExportState.FAILED, error=str(exc)[:500], finished_at=time.time())
        _save(rt, state)
        logger.exception("export %s failed", export_id)
        raise
    state.update(state=ExportState.FINISHED, rows=rows, finished_at=time.time())
    _save(rt, state)
    logger.info("export %s: %d rows in %.1f s", export_id, rows, state["finished_at"] - state["started_at"])
    return state


@contextlib.contextmanager
def _compressed(raw: IO[bytes], gzipped: bool) -> Iterator[IO[bytes]]:
    if not gzipped:
        yield raw
        return
    # Level 1: most of gzip's size gain at a fraction of its time.
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
        yield out


def _line(cells: list[str]) -> bytes:
    buf = io.StringIO()
    csvfiles.SqlSafeWriter(buf).writerow([safe_cell(c) for c in cells])
    return buf.getvalue().encode()


def _conditions(session: Session, state: dict[str, Any]) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if state["status"]:
        conds.append(Contact.status == state["status"])
    if state["topic_id"] is not None:
        conds.append(Contact.id.in_(select(Subscription.contact_id).where(
            Subscription.topic_id == state["topic_id"], Subscription.subscribed.is_(True))))
    if state["segment_id"] is not None:
        conds.append(segments.condition(session, segments.get_segment(session, state["segment_id"]).definition))
    return conds


# ---------------------------------------------------------------- the cells, as SQL text expressions

_UTC_TEXT = {  # the text of datetime.isoformat(timespec="microseconds") of a stored UTC time
    "postgresql": "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
    "sqlite": "replace({}, ' ', 'T') || '+00:00'",      # SQLite keeps it as 'YYYY-MM-DD HH:MM:SS.ffffff'
}
_PG_EXTRA = {
    "interests": "(SELECT string_agg(i.interest, ', ' ORDER BY i.interest) FROM contact_interest i "
                 "WHERE i.contact_id = contact.id)",
    "topics": "(SELECT string_agg(t.name, ', ' ORDER BY t.name) FROM subscription s JOIN topic t ON t.id = s.topic_id "
              "WHERE s.contact_id = contact.id AND s.subscribed)",
    "attributes": "(SELECT string_agg(a.key || '=' || a.value, '; ' ORDER BY a.key) "
                  "FROM jsonb_each_text(CASE WHEN jsonb_typeof(contact.attributes) = 'object' "
                  "THEN contact.attributes ELSE '{}'::jsonb END) a)",
}
# SQLite 3.40 has no ORDER BY inside group_concat: items come joined by a unit separator and are sorted in Python.
_SEP = "\x1f"
_SQLITE_EXTRA = {
    "interests": "(SELECT group_concat(i.interest, char(31)) FROM contact_interest i WHERE i.contact_id = contact.id)",
    "topics": "(SELECT group_concat(t.name, char(31)) FROM subscription s JOIN topic t ON t.id = s.topic_id "
              "WHERE s.contact_id = contact.id AND s.subscribed)",
    "attributes": "(SELECT group_concat(a.key || '=' || a.value, char(31)) FROM json_each(contact.attributes) a "
                  "WHERE a.key IS NOT NULL)",
}


_BIRTHDAY_TEXT = {
    "postgresql": f"CASE WHEN extract(year FROM contact.birthday) = {birthdays.NO_YEAR} "
                  "THEN to_char(contact.birthday, '\"--\"MM-DD') ELSE to_char(contact.birthday, 'YYYY-MM-DD') END",
    "sqlite": f"CASE WHEN substr(contact.birthday, 1, 4) = '{birthdays.NO_YEAR}' "
              "THEN '--' || substr(contact.birthday, 6, 5) ELSE contact.birthday END",
}


def _profile_exprs(dialect: str) -> list[str]:
    exprs = []
    for f in CSV_FIELDS:
        column = f"contact.{f}"
        if f in ("consent_at", "created_at"):
            column = _UTC_TEXT[dialect].format(column)
        elif f == "birthday":      # a birthday without a year as --MM-DD (campaigns.contacts.birthdays)
            column = _BIRTHDAY_TEXT[dialect]
        exprs.append(column)
    return exprs


def _joined(value: str | None, sep: str, key=None) -> str:
    return safe_cell(sep.join(sorted(value.split(_SEP), key=key))) if value else ""


def _attribute_key(item: str) -> str:
    return item.split("=", 1)[0]


# ---------------------------------------------------------------- SQLite: one streamed SELECT

def _write_pages(session: Session, conds: list, out: IO[bytes], progress) -> int:
    extra = [literal_column(_SQLITE_EXTRA[f]) for f in ("interests", "topics", "attributes")]
    stmt = select(*(literal_column(csvfiles.safe_sql(c, "sqlite")) for c in _profile_exprs("sqlite")), *extra) \
        .select_from(Contact.__table__).where(*conds).order_by(Contact.id)
    csvfiles.register_sqlite(session.connection().connection.driver_connection)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    writer = csvfiles.SqlSafeWriter(text)
    rows = 0
    n = len(CSV_FIELDS)
    # Core, not ORM execution: the ORM's per-row loading cost a fifth of the export's time at 1,000,000 contacts.
    for part in session.connection().execution_options(yield_per=PAGE).execute(stmt).partitions():
        writer.writerows([*row[:n], _joined(row[n], ", "), _joined(row[n + 1], ", "),
                          _joined(row[n + 2], "; ", _attribute_key)] for row in part)
        rows += len(part)
        progress(rows)
    text.flush()
    text.detach()
    return rows


# ---------------------------------------------------------------- PostgreSQL: one COPY

def _copy_postgresql(session: Session, conds: list, out: IO[bytes], progress) -> int:
    import psycopg  # PostgreSQL only: its COPY; SQLite installs never load the driver

    exprs = _profile_exprs("postgresql") + [_PG_EXTRA[f] for f in ("interests", "topics", "attributes")]
    # Each cell is computed once in the inner query (OFFSET 0 keeps the planner from inlining it, which would run
    # the correlated sub-selects once per mention in the formula guard), then guarded in the outer one.
    inner = select(Contact.id.label("cid"), *(literal_column(e).label(f"c{i}") for i, e in enumerate(exprs))) \
        .select_from(Contact.__table__).where(*conds).order_by(Contact.id).offset(0).subquery("q")
    stmt = select(*(literal_column(csvfiles.safe_sql(f"q.c{i}", "postgresql")) for i in range(len(exprs)))) \
        .select_from(inner).order_by(inner.c.cid)
    compiled = stmt.compile(dialect=session.get_bind().dialect)
    connection = session.connection().connection.driver_connection
    written = 0
    # A client-side cursor: COPY takes no server-side parameters, so the filter's values are bound here.
    with psycopg.ClientCursor(connection) as cur:
        with cur.copy(f"COPY ({compiled.string}) TO STDOUT WITH (FORMAT csv)", compiled.params) as copy:
            for chunk in copy:
                out.write(chunk)
                written += bytes(chunk).count(b"\n")
                progress(written)
        rows = cur.rowcount
    return rows if rows is not None and rows >= 0 else written


def cleanup(rt: Runtime, now: float | None = None) -> int:
    """Delete export files older than Settings.export_keep_hours; returns how many."""
    files = storage.for_settings(rt.settings)
    limit = dt.datetime.fromtimestamp((now or time.time()) - rt.settings.export_keep_hours * 3600, dt.UTC)
    old = [key for key, modified in files.list(FOLDER) if modified < limit]
    for key in old:
        files.delete(key)
    return len(old)


def states(rt: Runtime, limit: int = 20) -> Iterator[dict[str, Any]]:
    """Recent exports, newest first (for the export page); forgets those whose record has expired."""
    rt.redis.zremrangebyscore(RECENT, 0, time.time() - rt.settings.export_keep_hours * 3600)
    for export_id in rt.redis.zrevrange(RECENT, 0, limit - 1):
        raw = rt.redis.get(STATE.format(export_id.decode()))
        if raw:
            yield json.loads(raw)
