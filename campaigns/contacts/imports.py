"""CSV import of contacts: save the upload, preview and map its columns, then import row by row in bulk chunks.

The work is split by concern: imports_upload (files, Redis state, cleanup), imports_mapping (targets, guesses,
row validation), imports_writer (bulk writes per chunk). This module runs an import and re-exports what the admin
and the job use, so callers import one module.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.contacts.import_mapping import (
    TARGETS,
    Column,
    Mode,
    Row,
    RowConverter,
    RowRejected,
    guess,
    parse_mapping,
)
from campaigns.contacts.import_upload import (
    ErrorReport,
    ImportState,
    Progress,
    Upload,
    cleanup_imports,
    csv_key,
    errors_key,
    load_upload,
    meta,
    progress,
    reader,
    save_upload,
    start,
    state_key,
)
from campaigns.contacts.import_writer import ChunkWriter, Counts
from campaigns.errors import NotFound
from campaigns.models import Topic
from campaigns.storage import Storage, as_storage

__all__ = ["TARGETS", "Column", "ImportState", "Mode", "Progress", "RowRejected", "Upload", "cleanup_imports",
           "csv_key", "errors_key", "guess", "load_upload", "parse_mapping", "progress", "run_import", "save_upload",
           "start"]

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000      # rows per transaction; SQLite allows 32,766 parameters in one IN list


def run_import(session: Session, redis: Redis, storage: Storage | Path, import_id: str) -> Progress:
    """Import an uploaded, mapped CSV: validate every row, write valid ones in chunks, report the others.

    The uploaded file is deleted when the import finishes; the error report stays for download until
    cleanup_imports removes it.
    """
    state = meta(redis, import_id)
    key = state_key(import_id)
    mapping = [Column(t, k) for t, k in json.loads(state["mapping"])]
    mode, filename, encoding = state["mode"], state["filename"], state["encoding"]
    size = max(int(state.get("size", 1)), 1)
    storage = as_storage(storage)
    upload_key = csv_key(import_id)
    if not storage.exists(upload_key):
        message = "The uploaded file is no longer there. Please upload it again."
        redis.hset(key, mapping={"state": ImportState.FAILED, "message": message})
        raise NotFound(message)
    redis.hset(key, mapping={"state": ImportState.RUNNING})
    topic_ids = {name.lower(): tid for tid, name in session.execute(select(Topic.id, Topic.name))}
    session.rollback()            # end the read: on SQLite each chunk takes the write lock for itself only
    counts = Counts()
    report = ErrorReport(storage, errors_key(import_id), [])
    # The writes get a connection of their own, so per-connection settings hold for the whole import.
    connection = session.get_bind().connect()
    writer = ChunkWriter(connection, mapping, mode, f"import: {filename}"[:200], topic_ids)
    convert = RowConverter(mapping, topic_ids)
    chunk: list[tuple[list[str], Row]] = []
    # One writer thread: the database works on chunk N while this thread parses chunk N+1 (the drivers release
    # the GIL while they wait), so parsing and writing overlap instead of taking turns.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"import-{import_id[:8]}")
    pending: Future | None = None
    try:
        with storage.open(upload_key) as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, newline="")
            rows_in = reader(text)
            report.header = next(rows_in)
            while True:
                try:
                    row = next(rows_in)
                except StopIteration:
                    break
                except csv.Error as exc:
                    counts.read += 1
                    counts.failed += 1
                    report.add(getattr(exc, "row", []), f"unreadable line: {exc}")
                    continue
                if not "".join(row).strip():
                    continue                    # blank lines are not rows
                counts.read += 1
                try:
                    chunk.append((row, convert(row)))
                except RowRejected as exc:
                    counts.failed += 1
                    report.add(row, str(exc))
                if len(chunk) >= CHUNK_ROWS:
                    if pending is not None:
                        pending.result()
                    _publish(redis, key, counts, raw.tell() * 100 // size)
                    pending = pool.submit(writer.write, chunk, counts, report)
                    chunk = []
            if pending is not None:
                pending.result()
            writer.write(chunk, counts, report)
    except Exception as exc:
        pool.shutdown(wait=True)
        writer.rollback()
        report.close()
        logger.exception("import %s failed", import_id)
        redis.hset(key, mapping={"state": ImportState.FAILED, "message": f"The import stopped: {exc}"})
        raise
    finally:
        pool.shutdown(wait=True)
        writer.close()
        connection.close()
    report.close()
    storage.delete(upload_key)
    _publish(redis, key, counts, 100, state=ImportState.FINISHED)
    logger.info("import %s finished: %s", import_id, counts)
    return Progress(ImportState.FINISHED, counts.read, counts.created, counts.updated, counts.skipped,
                    counts.failed, 100, errors=counts.errors + counts.failed)


def _publish(redis: Redis, key: str, counts: Counts, percent: int, state: str = ImportState.RUNNING) -> None:
    redis.hset(key, mapping={"state": state, "read": counts.read, "created": counts.created,
                             "updated": counts.updated, "skipped": counts.skipped, "failed": counts.failed,
                             "errors": counts.errors + counts.failed, "percent": min(percent, 100)})
