"""CSV import of contacts: save the upload, preview and map its columns, then import row by row in bulk chunks.

The file is never held in memory: the upload is copied to instance/imports/<id>.csv in blocks and read back with
csv.reader over a text wrapper. Import state (file name, encoding, progress) lives in Redis, not in the database.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.errors import NotFound, ValidationError
from campaigns.models import Contact, ContactInterest, ContactStatus, Subscription, Suppression, Topic, utcnow
from campaigns.services.contacts import normalize_email
from campaigns.services.ingest import email_hash

logger = logging.getLogger(__name__)

# Profile fields an import column can fill, with their column widths (longer values fail the row, not the import).
FIELD_LIMITS = {"email": 320, "first_name": 200, "last_name": 200, "phone": 50, "address_line1": 200,
                "address_line2": 200, "city": 100, "region": 100, "postal_code": 20, "country": 2,
                "timezone": 64, "locale": 16}
TARGETS = (*FIELD_LIMITS, "birthday", "interests", "topics", "attribute", "ignore")
MAX_COLUMNS = 200
MAX_CELL = 2 * 1024 * 1024          # csv's field limit: a 1 MB cell parses and then fails its row with a message
CHUNK_ROWS = 5000
PREVIEW_ROWS = 5
BLOCK = 1 << 16
TTL = 7 * 24 * 3600

# Header names (lower-cased, without spaces, dashes and underscores) mapped to a target.
_GUESSES = {
    "email": "email", "e-mail": "email", "mail": "email", "emailaddress": "email", "emailadresse": "email",
    "firstname": "first_name", "givenname": "first_name", "vorname": "first_name", "prenom": "first_name",
    "prénom": "first_name", "forename": "first_name",
    "lastname": "last_name", "surname": "last_name", "familyname": "last_name", "nachname": "last_name",
    "nom": "last_name",
    "phone": "phone", "telephone": "phone", "tel": "phone", "telefon": "phone", "mobile": "phone",
    "address": "address_line1", "address1": "address_line1", "addressline1": "address_line1",
    "street": "address_line1", "strasse": "address_line1", "straße": "address_line1",
    "address2": "address_line2", "addressline2": "address_line2",
    "city": "city", "town": "city", "ort": "city", "stadt": "city", "ville": "city",
    "region": "region", "state": "region", "province": "region", "bundesland": "region",
    "postalcode": "postal_code", "postcode": "postal_code", "zip": "postal_code", "zipcode": "postal_code",
    "plz": "postal_code", "postleitzahl": "postal_code",
    "country": "country", "countrycode": "country", "land": "country",
    "birthday": "birthday", "birthdate": "birthday", "dateofbirth": "birthday", "dob": "birthday",
    "geburtstag": "birthday", "geburtsdatum": "birthday",
    "timezone": "timezone", "tz": "timezone", "locale": "locale", "language": "locale", "sprache": "locale",
    "interests": "interests", "interest": "interests", "tags": "interests", "interessen": "interests",
    "topics": "topics", "topic": "topics", "lists": "topics", "newsletters": "topics",
}
_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d")
_LIST_SPLIT = re.compile(r"[;,|]")


class Mode:
    UPDATE = "update"
    SKIP = "skip"


@dataclass(frozen=True)
class Column:
    """How one CSV column is imported: target is one of TARGETS; key names the custom attribute."""

    target: str
    key: str = ""


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


@dataclass
class Progress:
    """What the import has done so far (stored in a Redis hash)."""

    state: str = "queued"     # queued / running / finished / failed
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    percent: int = 0
    message: str = ""
    errors: int = 0           # rows in the error report (failed + skipped with a reason)


# ---------------------------------------------------------------- files and state

def imports_dir(instance_path: Path) -> Path:
    path = Path(instance_path) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _key(import_id: str) -> str:
    return f"rapport:import:{import_id}"


def _check_id(import_id: str) -> str:
    try:
        return str(uuid.UUID(import_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFound("no such import") from None


def csv_path(instance_path: Path, import_id: str) -> Path:
    return imports_dir(instance_path) / f"{_check_id(import_id)}.csv"


def errors_path(instance_path: Path, import_id: str) -> Path:
    return imports_dir(instance_path) / f"{_check_id(import_id)}.errors.csv"


def _detect_encoding(path: Path) -> tuple[str, str]:
    """utf-8-sig when every byte decodes as UTF-8 (checked in blocks), else latin-1 with a note saying so."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        try:
            while block := fh.read(BLOCK):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "latin-1", ("The file is not valid UTF-8; it was read as Latin-1 (ISO-8859-1). "
                               "Check accented letters.")
    return "utf-8-sig", ""


def _reader(fh: IO[str]) -> Iterator[list[str]]:
    csv.field_size_limit(MAX_CELL)
    return csv.reader(fh)


def save_upload(redis: Redis, instance_path: Path, stream: IO[bytes], filename: str) -> Upload:
    """Copy an uploaded file to instance/imports/ in blocks, check it is a CSV and return its preview."""
    import_id = str(uuid.uuid4())
    path = csv_path(instance_path, import_id)
    size = 0
    with path.open("wb") as out:
        while block := stream.read(BLOCK):
            if size == 0 and b"\x00" in block[:8192]:
                out.close()
                path.unlink(missing_ok=True)
                raise ValidationError("This is not a CSV file (it contains binary data). Export it as CSV first.",
                                      field="file")
            out.write(block)
            size += len(block)
    if size == 0:
        path.unlink(missing_ok=True)
        raise ValidationError("The file is empty.", field="file")
    filename = Path(filename or "upload.csv").name[:150]
    encoding, note = _detect_encoding(path)
    try:
        upload = _preview(path, import_id, filename, encoding, note)
    except ValidationError:
        path.unlink(missing_ok=True)
        raise
    redis.hset(_key(import_id), mapping={"filename": filename, "encoding": encoding, "size": size,
                                         "state": "uploaded", "note": note})
    redis.expire(_key(import_id), TTL)
    return upload


def _preview(path: Path, import_id: str, filename: str, encoding: str, note: str) -> Upload:
    with path.open(encoding=encoding, newline="") as fh:
        reader = _reader(fh)
        try:
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise ValidationError("The first line has no column names. The first line must name the columns.",
                                      field="file")
            if len(header) > MAX_COLUMNS:
                raise ValidationError(f"The first line has {len(header):,} columns; at most {MAX_COLUMNS} are "
                                      "supported. Is this the right file?", field="file")
            rows = []
            for row in reader:
                rows.append([cell[:200] for cell in row[:MAX_COLUMNS]])
                if len(rows) == PREVIEW_ROWS:
                    break
        except csv.Error as exc:
            raise ValidationError(f"This file cannot be read as CSV: {exc}.", field="file") from None
    header = [h.strip()[:200] for h in header]
    return Upload(import_id, filename, encoding, header, rows, [guess(h) for h in header], note)


def load_upload(redis: Redis, instance_path: Path, import_id: str) -> Upload:
    """The preview of an upload saved earlier."""
    meta = _meta(redis, import_id)
    return _preview(csv_path(instance_path, import_id), import_id, meta["filename"], meta["encoding"],
                    meta.get("note", ""))


def _meta(redis: Redis, import_id: str) -> dict[str, str]:
    raw = redis.hgetall(_key(_check_id(import_id)))
    if not raw:
        raise NotFound("This import is unknown or has expired. Please upload the file again.")
    return {k.decode(): v.decode() for k, v in raw.items()}


def guess(header: str) -> Column:
    """A sensible default target for a column name (Email, E-Mail, First name, Vorname…)."""
    name = re.sub(r"[\s_\-.]", "", header.strip().lower())
    if header.strip().lower() in ("e-mail", "e mail"):
        return Column("email")
    target = _GUESSES.get(name)
    if target:
        return Column(target)
    if not name:
        return Column("ignore")
    return Column("attribute", re.sub(r"\W+", "_", header.strip().lower()).strip("_")[:64] or "ignore")


def parse_mapping(form: Mapping[str, str], columns: int) -> list[Column]:
    """Read col-<i> / key-<i> form fields into a mapping; raises ValidationError with what is wrong."""
    mapping = []
    for i in range(columns):
        target = form.get(f"col-{i}", "ignore")
        if target not in TARGETS:
            raise ValidationError(f"Column {i + 1}: unknown field {target!r}.", field=f"col-{i}")
        key = form.get(f"key-{i}", "").strip()[:64]
        if target == "attribute" and not key:
            raise ValidationError(f"Column {i + 1}: give the custom attribute a name.", field=f"key-{i}")
        mapping.append(Column(target, key))
    emails = [c for c in mapping if c.target == "email"]
    if len(emails) != 1:
        raise ValidationError("Map exactly one column to Email: contacts are matched by their address.",
                              field="col-0")
    for name in FIELD_LIMITS | {"birthday": 0}:
        if name != "email" and sum(c.target == name for c in mapping) > 1:
            raise ValidationError(f"Only one column can be mapped to {name}.", field="col-0")
    return mapping


def start(redis: Redis, import_id: str, mapping: list[Column], mode: str) -> None:
    """Record the mapping and mark the import queued (the caller enqueues the job)."""
    if mode not in (Mode.UPDATE, Mode.SKIP):
        raise ValidationError("Choose whether existing contacts are updated or skipped.", field="mode")
    meta = _meta(redis, import_id)
    if meta.get("state") not in ("uploaded",):
        raise ValidationError("This import has already been started.", field="mode")
    redis.hset(_key(import_id), mapping={
        "state": "queued", "mode": mode,
        "mapping": json.dumps([[c.target, c.key] for c in mapping])})


def progress(redis: Redis, import_id: str) -> dict[str, Any]:
    """The import's progress as a JSON-friendly dict."""
    meta = _meta(redis, import_id)
    result: dict[str, Any] = {"state": meta.get("state", ""), "filename": meta.get("filename", ""),
                              "message": meta.get("message", ""), "note": meta.get("note", "")}
    for name in ("read", "created", "updated", "skipped", "failed", "percent", "errors"):
        result[name] = int(meta.get(name, 0))
    return result


# ---------------------------------------------------------------- row validation

def _date(value: str) -> dt.date:
    if len(value) == 10 and value[4] == "-":
        try:
            return dt.date.fromisoformat(value)      # the common case, far cheaper than strptime
        except ValueError:
            pass
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"birthday {value[:40]!r} is not a date like 1990-04-23")


# Plain ASCII addresses skip email_validator's full parse; anything unusual gets the full check.
_SIMPLE_EMAIL = re.compile(r"[a-z0-9](?:[a-z0-9._+\-]{0,62}[a-z0-9])?@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
                           r"(?:com|net|org|de|at|ch|fr|it|es|nl|be|uk|us|eu|io|info|biz|pl|se|dk|no|fi|pt|ie)")


def _email(raw: str) -> str:
    value = raw.strip().lower()
    if _SIMPLE_EMAIL.fullmatch(value) and ".." not in value:
        return value
    return normalize_email(raw)


@dataclass
class _Row:
    values: dict[str, Any]
    attributes: dict[str, str]
    interests: list[str]
    topics: list[str]


def _convert(row: list[str], mapping: list[Column], topic_ids: dict[str, int]) -> _Row:
    """One CSV row as contact values; raises ValueError with the reason the row is refused."""
    if len(row) > len(mapping):
        if any(cell.strip() for cell in row[len(mapping):]):
            raise ValueError(f"the row has {len(row)} cells but the header has {len(mapping)}")
    values: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    interests: list[str] = []
    topics: list[str] = []
    for col, cell in zip(mapping, row, strict=False):
        target = col.target
        if target == "ignore":
            continue
        cell = cell.strip()
        if target == "email":
            if not cell:
                raise ValueError("the email address is empty")
            if len(cell) > 320:
                raise ValueError("the email address is too long")
            try:
                values["email"] = _email(cell)
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
        elif target == "birthday":
            values["birthday"] = _date(cell) if cell else None
        elif target == "country":
            code = cell.upper()
            if code and (len(code) != 2 or not code.isalpha() or not code.isascii()):
                raise ValueError(f"country {cell[:40]!r} is not a two-letter code such as DE or US")
            values["country"] = code
        elif target in FIELD_LIMITS:
            if len(cell) > FIELD_LIMITS[target]:
                raise ValueError(f"{target} is longer than {FIELD_LIMITS[target]} characters")
            values[target] = cell
        elif target == "attribute":
            if len(cell) > 10_000:
                raise ValueError(f"attribute {col.key} is longer than 10,000 characters")
            attributes[col.key] = cell
        elif target == "interests":
            for item in _LIST_SPLIT.split(cell):
                item = item.strip().lower()
                if item:
                    if len(item) > 100:
                        raise ValueError("an interest is longer than 100 characters")
                    interests.append(item)
        elif target == "topics":
            for name in _LIST_SPLIT.split(cell):
                name = name.strip()
                if name:
                    if name.lower() not in topic_ids:
                        raise ValueError(f"there is no topic called {name[:60]!r}")
                    topics.append(name.lower())
    if "email" not in values:
        raise ValueError("the row has no email address")
    return _Row(values, attributes, interests, topics)


# ---------------------------------------------------------------- the import

@dataclass
class _Counts:
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: int = 0
    chunk: list[tuple[list[str], _Row]] = field(default_factory=list)


def _insert(session: Session):  # noqa: ANN202
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class _ErrorReport:
    """The downloadable error report: the original row plus an error column; opened on the first bad row."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.header, self._fh, self._writer = path, header, None, None

    def add(self, row: list[str], error: str) -> None:
        if self._writer is None:
            self._fh = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._fh)
            self._writer.writerow([*self.header, "error"])
        padded = row + [""] * (len(self.header) - len(row))
        self._writer.writerow([*padded, error])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def run_import(session: Session, redis: Redis, instance_path: Path, import_id: str) -> Progress:
    """Import an uploaded, mapped CSV: validate every row, write valid ones in chunks, report the others."""
    meta = _meta(redis, import_id)
    key = _key(import_id)
    mapping = [Column(t, k) for t, k in json.loads(meta["mapping"])]
    mode, filename, encoding = meta["mode"], meta["filename"], meta["encoding"]
    size = max(int(meta.get("size", 1)), 1)
    path = csv_path(instance_path, import_id)
    redis.hset(key, mapping={"state": "running"})
    topic_ids = {name.lower(): tid for tid, name in session.execute(select(Topic.id, Topic.name))}
    counts = _Counts()
    report = _ErrorReport(errors_path(instance_path, import_id), [])
    writer = _ChunkWriter(session, mapping, mode, f"import: {filename}"[:200], topic_ids)
    try:
        with path.open("rb") as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, newline="")
            reader = _reader(text)
            header = next(reader)
            report.header = header
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    counts.read += 1
                    counts.failed += 1
                    report.add([], f"unreadable line: {exc}")
                    continue
                if not any(cell.strip() for cell in row):
                    continue                    # blank lines are not rows
                counts.read += 1
                try:
                    counts.chunk.append((row, _convert(row, mapping, topic_ids)))
                except ValueError as exc:
                    counts.failed += 1
                    report.add(row, str(exc))
                if len(counts.chunk) >= CHUNK_ROWS:
                    writer.write(counts, report)
                    _publish(redis, key, counts, raw.tell() * 100 // size)
            writer.write(counts, report)
    except Exception as exc:
        session.rollback()
        report.close()
        logger.exception("import %s failed", import_id)
        redis.hset(key, mapping={"state": "failed", "message": f"The import stopped: {exc}"})
        raise
    report.close()
    _publish(redis, key, counts, 100, state="finished")
    logger.info("import %s finished: %s", import_id, counts)
    return Progress("finished", counts.read, counts.created, counts.updated, counts.skipped, counts.failed, 100,
                    errors=counts.errors)


def _publish(redis: Redis, key: str, counts: _Counts, percent: int, state: str = "running") -> None:
    redis.hset(key, mapping={"state": state, "read": counts.read, "created": counts.created,
                             "updated": counts.updated, "skipped": counts.skipped, "failed": counts.failed,
                             "errors": counts.errors + counts.failed, "percent": min(percent, 100)})


class _ChunkWriter:
    """Writes one chunk of validated rows with a few bulk statements and commits it."""

    def __init__(self, session: Session, mapping: list[Column], mode: str, consent: str,
                 topic_ids: dict[str, int]) -> None:
        self.session, self.mode, self.consent, self.topic_ids = session, mode, consent, topic_ids
        self.insert = _insert(session)
        self.fields = [c.target for c in mapping if c.target in FIELD_LIMITS or c.target == "birthday"]
        self.has_attributes = any(c.target == "attribute" for c in mapping)

    def _insert_many(self, model: type, rows: list[dict[str, Any]], **conflict: Any) -> int:
        """INSERT … ON CONFLICT DO NOTHING of many rows; returns how many were inserted."""
        result = self.session.connection().execute(self.insert(model).on_conflict_do_nothing(**conflict), rows)
        return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(rows)

    def write(self, counts: _Counts, report: _ErrorReport) -> None:
        chunk, counts.chunk = counts.chunk, []
        if not chunk:
            return
        session = self.session
        # The last of several rows for one address wins; the earlier ones are reported as skipped.
        by_email: dict[str, tuple[list[str], _Row]] = {}
        for raw, row in chunk:
            email = row.values["email"]
            if email in by_email:
                counts.skipped += 1
                counts.errors += 1
                report.add(by_email[email][0], "skipped: the same address appears again further down")
            by_email[email] = (raw, row)
        hashes = {email_hash(e): e for e in by_email}
        for h in session.scalars(select(Suppression.email_hash).where(Suppression.email_hash.in_(list(hashes)))):
            raw, _row = by_email.pop(hashes[h])
            counts.skipped += 1
            counts.errors += 1
            report.add(raw, "skipped: suppressed (bounced, complained or unsubscribed for good)")
        existing = {email: (cid, attrs) for cid, email, attrs in session.execute(
            select(Contact.id, Contact.email, Contact.attributes).where(Contact.email.in_(list(by_email))))}
        now = utcnow()
        new_rows, updates = [], []
        for email, (_raw, row) in by_email.items():
            if email in existing:
                if self.mode == Mode.SKIP:
                    counts.skipped += 1
                    continue
                cid, attrs = existing[email]
                # A blank cell never erases what we already know about an existing contact.
                values = {k: v for k, v in row.values.items() if k != "email" and v not in ("", None)}
                if self.has_attributes:
                    values["attributes"] = {**(attrs or {}), **row.attributes}
                values["id"] = cid
                values["updated_at"] = now
                updates.append(values)
            else:
                values = {"email": email, "first_name": "", "last_name": "", "phone": "", "address_line1": "",
                          "address_line2": "", "city": "", "region": "", "postal_code": "", "country": "",
                          "birthday": None, "timezone": "UTC", "locale": "en", "status": ContactStatus.SUBSCRIBED.value,
                          "consent_source": self.consent, "consent_at": now, "created_at": now, "updated_at": now,
                          "engagement_score": 0.0, "frequency": "every", "attributes": row.attributes}
                values.update(row.values)
                values["timezone"] = values["timezone"] or "UTC"
                values["locale"] = values["locale"] or "en"
                new_rows.append(values)
        if new_rows:
            counts.created += self._insert_many(Contact, new_rows, index_elements=["email"])
        if updates:
            # Rows differ in which keys they carry only by mapping, so one executemany per key set.
            groups: dict[tuple[str, ...], list[dict]] = {}
            for values in updates:
                groups.setdefault(tuple(sorted(values)), []).append(values)
            for group in groups.values():
                session.execute(update(Contact), group)
            counts.updated += len(updates)
        touched = [e for e in by_email if self.mode == Mode.UPDATE or e not in existing]
        links = [(e, by_email[e][1]) for e in touched if by_email[e][1].interests or by_email[e][1].topics]
        if links:
            ids = dict(session.execute(select(Contact.email, Contact.id).where(
                Contact.email.in_([e for e, _ in links]))).all())
            interests = [{"contact_id": ids[e], "interest": i} for e, row in links for i in set(row.interests)]
            subs = [{"contact_id": ids[e], "topic_id": self.topic_ids[t], "subscribed": True, "updated_at": now}
                    for e, row in links for t in set(row.topics)]
            if interests:
                self._insert_many(ContactInterest, interests)
            if subs:
                # An existing unsubscribe is the contact's choice: an import never overrides it.
                self._insert_many(Subscription, subs)
        session.commit()
