"""CSV import, the files and the state: save an upload to storage (`imports/<id>.csv`) in blocks, preview it, keep
the import's state (file name, encoding, mapping, progress) in a Redis hash, and clean old files up.

The file is never held in memory: the upload is copied in blocks and read back with csv.reader over a text wrapper.
Files go through campaigns.storage, so a worker on another machine reads what the web app saved (with S3 storage).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from redis import Redis

from campaigns.config import Settings
from campaigns.contacts.import_mapping import Column, Mode, guess
from campaigns.csvfiles import SafeWriter
from campaigns.errors import NotFound, ValidationError
from campaigns.storage import Storage, as_storage, for_settings

logger = logging.getLogger(__name__)

MAX_COLUMNS = 200
MAX_CELL = 2 * 1024 * 1024          # csv's field limit: a 1 MB cell parses and then fails its row with a message
PREVIEW_ROWS = 5
BLOCK = 1 << 16
TTL = 7 * 24 * 3600


@dataclass
class Upload:
    """A saved upload, ready to be mapped."""

    id: str
    filename: str
    encoding: str
    header: list[str]
    rows: list[list[str]]
    guesses: list[Column]
    note: str = ""


class ImportState(StrEnum):
    """Where an import stands (the "state" field of its Redis hash)."""

    UPLOADED = "uploaded"     # saved and previewed, waiting for its mapping
    QUEUED = "queued"         # mapped; the job is enqueued
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass
class Progress:
    """What the import has done so far (stored in a Redis hash)."""

    state: str = ImportState.QUEUED
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    percent: int = 0
    message: str = ""
    errors: int = 0           # rows in the error report (failed + skipped with a reason)


FOLDER = "imports"


def state_key(import_id: str) -> str:
    """The Redis hash holding one import's state."""
    return f"rapport:import:{import_id}"


def _check_id(import_id: str) -> str:
    try:
        return str(uuid.UUID(import_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFound("no such import") from None


def csv_key(import_id: str) -> str:
    """The storage key of an import's uploaded file (NotFound for an id that is not a UUID)."""
    return f"{FOLDER}/{_check_id(import_id)}.csv"


def errors_key(import_id: str) -> str:
    """The storage key of an import's error report."""
    return f"{FOLDER}/{_check_id(import_id)}.errors.csv"


class _EncodingCheck:
    """Fed each block as it is copied: is the whole file UTF-8? (No second pass over a large upload.)"""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.utf8 = True

    def feed(self, block: bytes, final: bool = False) -> None:
        if self.utf8:
            try:
                self._decoder.decode(block, final=final)
            except UnicodeDecodeError:
                self.utf8 = False

    @property
    def result(self) -> tuple[str, str]:
        """utf-8-sig when every byte decoded as UTF-8, else latin-1 with a note saying so."""
        if self.utf8:
            return "utf-8-sig", ""
        return "latin-1", "The file is not valid UTF-8; it was read as Latin-1 (ISO-8859-1). Check accented letters."


def _utf16(head: bytes) -> str:
    """The UTF-16 codec for a file that starts with head, or "" when it is not UTF-16 (Excel's "Unicode text")."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"                      # the codec reads the byte-order mark and drops it
    pairs = len(head) // 2
    if pairs >= 4:
        # ASCII-range text in UTF-16 has a zero in every other byte: which half tells the byte order.
        odd_zeros = sum(1 for i in range(1, 2 * pairs, 2) if head[i] == 0)
        even_zeros = sum(1 for i in range(0, 2 * pairs, 2) if head[i] == 0)
        if odd_zeros > 0.6 * pairs and even_zeros < 0.1 * pairs:
            return "utf-16-le"
        if even_zeros > 0.6 * pairs and odd_zeros < 0.1 * pairs:
            return "utf-16-be"
    return ""


def looks_binary(head: bytes) -> bool:
    """Whether the first block of an upload is not text at all (a spreadsheet, a PDF, an image), as opposed to a
    CSV with a stray NUL byte, which costs only its row."""
    if _utf16(head):
        return False
    if head.startswith((b"PK\x03\x04", b"%PDF", b"\xd0\xcf\x11\xe0", b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        return True
    return head.count(b"\x00") > max(1, len(head) // 100)


# Excel writes ";" where the decimal separator is a comma (most of Europe), tab for "Unicode text".
_DELIMITERS = (",", ";", "\t", "|")


def _delimiter(first_line: str) -> str:
    """The separator the header line uses most (outside quotes); "," when it names a single column."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for ch in first_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class BadRow(csv.Error):
    """A row that cannot be imported as it is; row holds what could be read of it, for the error report."""

    def __init__(self, message: str, row: list[str]) -> None:
        super().__init__(message)
        self.row = row


class _Lines:
    """The file's lines for csv.reader, NUL bytes removed and the line noted, so its row can be refused."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.number = 0
        self.nul_at: int | None = None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number += 1
        if "\x00" in line:
            self.nul_at = self.nul_at or self.number
            line = line.replace("\x00", "")
        return line


class Rows:
    """csv rows of an upload in its own dialect; a row with a NUL byte or an over-long cell raises csv.Error for
    that row alone (iteration goes on with the next one), so one bad line never costs the whole file."""

    def __init__(self, fh: IO[str]) -> None:
        csv.field_size_limit(MAX_CELL)
        first = fh.readline()
        self.delimiter = _delimiter(first)
        self._lines = _Lines(itertools.chain([first] if first else [], fh))
        self._csv = csv.reader(self._lines, delimiter=self.delimiter)

    def __iter__(self) -> Rows:
        return self

    def __next__(self) -> list[str]:
        row = next(self._csv)        # csv.Error for an over-long cell: that row is dropped, the next one follows
        if self._lines.nul_at is not None:
            line, self._lines.nul_at = self._lines.nul_at, None
            raise BadRow(f"line {line} contains a NUL byte (a damaged or binary line)", row)
        return row


def reader(fh: IO[str]) -> Rows:
    """Rows of an uploaded CSV: its separator (",", ";", tab or "|") read from the header line, cells up to
    MAX_CELL, bad rows raising csv.Error one at a time."""
    return Rows(fh)


def save_upload(redis: Redis, storage: Storage | Path, stream: IO[bytes], filename: str) -> Upload:
    """Copy an uploaded file to storage in blocks, check it is a CSV and return its preview."""
    storage = as_storage(storage)
    import_id = str(uuid.uuid4())
    key = csv_key(import_id)
    size = 0
    check = _EncodingCheck()
    first = stream.read(BLOCK)
    if looks_binary(first[:8192]):
        raise ValidationError("This is not a CSV file (it contains binary data). Export it as CSV first.",
                              field="file")
    if not first:
        raise ValidationError("The file is empty.", field="file")
    with storage.create(key) as out:
        block = first
        while block:
            check.feed(block)
            out.write(block)
            size += len(block)
            block = stream.read(BLOCK)
        check.feed(b"", final=True)
    filename = Path(filename or "upload.csv").name[:150]
    utf16 = _utf16(first)      # Excel's "Unicode text": by its byte-order mark or its zero bytes
    encoding, note = (utf16, "") if utf16 else check.result
    try:
        upload = _preview(storage, key, import_id, filename, encoding, note)
    except ValidationError:
        storage.delete(key)
        raise
    redis.hset(state_key(import_id), mapping={"filename": filename, "encoding": encoding, "size": size,
                                         "state": ImportState.UPLOADED, "note": note})
    redis.expire(state_key(import_id), TTL)
    return upload


def _preview(storage: Storage, key: str, import_id: str, filename: str, encoding: str, note: str) -> Upload:
    # Only the first rows are read: from S3 the rest of the object is never downloaded.
    with storage.open(key) as raw, io.TextIOWrapper(raw, encoding=encoding, newline="") as fh:
        rows_in = reader(fh)
        try:
            header = next(rows_in, None)
            if not header or not any(h.strip() for h in header):
                raise ValidationError("The first line has no column names. The first line must name the columns.",
                                      field="file")
            if len(header) > MAX_COLUMNS:
                raise ValidationError(f"The first line has {len(header):,} columns; at most {MAX_COLUMNS} are "
                                      "supported. Is this the right file?", field="file")
        except csv.Error as exc:
            raise ValidationError(f"This file cannot be read as CSV: {exc}.", field="file") from None
        rows: list[list[str]] = []
        unreadable = 0
        while len(rows) < PREVIEW_ROWS and unreadable < 100:
            try:
                row = next(rows_in)
            except StopIteration:
                break
            except csv.Error:
                unreadable += 1          # the import reports it with its reason; the preview shows the others
                continue
            rows.append([cell[:200] for cell in row[:MAX_COLUMNS]])
    header = [h.strip()[:200] for h in header]
    return Upload(import_id, filename, encoding, header, rows, [guess(h) for h in header], note)


def load_upload(redis: Redis, storage: Storage | Path, import_id: str) -> Upload:
    """The preview of an upload saved earlier."""
    storage = as_storage(storage)
    state = meta(redis, import_id)
    try:
        return _preview(storage, csv_key(import_id), import_id, state["filename"], state["encoding"],
                        state.get("note", ""))
    except FileNotFoundError:
        raise NotFound("The uploaded file is no longer there (old uploads are cleaned up). "
                       "Please upload it again.") from None


def meta(redis: Redis, import_id: str) -> dict[str, str]:
    """The import's state hash as strings; NotFound when unknown or expired."""
    raw = redis.hgetall(state_key(_check_id(import_id)))
    if not raw:
        raise NotFound("This import is unknown or has expired. Please upload the file again.")
    return {k.decode(): v.decode() for k, v in raw.items()}


def start(redis: Redis, storage: Storage | Path, import_id: str, mapping: list[Column], mode: str) -> None:
    """Record the mapping and mark the import queued (the caller enqueues the job)."""
    if mode not in (Mode.UPDATE, Mode.SKIP):
        raise ValidationError("Choose whether existing contacts are updated or skipped.", field="mode")
    state = meta(redis, import_id)
    if state.get("state") != ImportState.UPLOADED:
        raise ValidationError("This import has already been started.", field="mode")
    try:
        # A fresh modification time: cleanup_imports never removes a file an import is about to read.
        as_storage(storage).touch(csv_key(import_id))
    except FileNotFoundError:
        raise NotFound("The uploaded file is no longer there (old uploads are cleaned up). "
                       "Please upload it again.") from None
    redis.hset(state_key(import_id), mapping={
        "state": ImportState.QUEUED, "mode": mode,
        "mapping": json.dumps([[c.target, c.key] for c in mapping])})


def progress(redis: Redis, import_id: str) -> dict[str, Any]:
    """The import's progress as a JSON-friendly dict."""
    state = meta(redis, import_id)
    result: dict[str, Any] = {"state": state.get("state", ""), "filename": state.get("filename", ""),
                              "message": state.get("message", ""), "note": state.get("note", "")}
    for name in ("read", "created", "updated", "skipped", "failed", "percent", "errors"):
        result[name] = int(state.get(name, 0))
    return result


class ErrorReport:
    """The downloadable error report: the original row plus an error column; created in storage on the first bad row
    and published there when closed."""

    def __init__(self, storage: Storage, key: str, header: list[str]) -> None:
        self.storage, self.key, self.header, self._fh, self._writer = storage, key, header, None, None
        self._lock = threading.Lock()     # the parser and the chunk writer both report rows

    def add(self, row: list[str], error: str) -> None:
        """Append one refused row with the reason."""
        padded = row + [""] * (len(self.header) - len(row))
        with self._lock:
            if self._writer is None:
                self._fh = io.TextIOWrapper(self.storage.create(self.key), encoding="utf-8-sig", newline="")
                self._writer = SafeWriter(self._fh)
                self._writer.writerow([*self.header, "error"])
            self._writer.writerow([*padded, error])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def cleanup_imports(settings: Settings, older_than: dt.timedelta) -> int:
    """Delete uploads and error reports in storage's imports/ not touched for older_than; returns how many.

    Run periodically (the scheduler): uploads that were never started and error reports nobody downloaded
    would otherwise pile up. A finished import deletes its own upload at once.
    """
    storage = for_settings(settings)
    cutoff = dt.datetime.now(dt.UTC) - older_than
    old = [key for key, modified in storage.list(f"{FOLDER}/") if modified < cutoff]
    for key in old:
        storage.delete(key)     # gone meanwhile (a finishing import, another cleaner) is fine
    if old:
        logger.info("removed %d old import files", len(old))
    return len(old)
