"""Codes into a pool: imported from a shop's CSV export (all or, with every reason, none) or generated at random.

Functions here flush; the caller that opened the session commits.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.coupons.pools import get_pool
from campaigns.errors import ValidationError
from campaigns.models import CouponCode, utcnow

logger = logging.getLogger(__name__)

# No look-alikes: no 0/O, 1/I/L.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{2,63}")
PREFIX_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9\-]{0,15}")
MAX_GENERATE = 100_000
MAX_IMPORT = 200_000
MAX_IMPORT_BYTES = 10 * 1024 * 1024
CODE_HEADERS = ("code", "coupon", "coupon_code", "couponcode", "voucher", "voucher_code", "gutschein",
                "gutscheincode", "promo_code", "promocode")
CHUNK = 1000


@dataclass(frozen=True)
class ImportResult:
    """What an import added and what it left out on purpose."""

    added: int
    already_in_pool: int


def _decode(data: bytes) -> str:
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationError(f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it up",
                              field="file")
    if not data.strip():
        raise ValidationError("the file is empty", field="file")
    if b"\0" in data[:4096] and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        raise ValidationError("this is not a CSV text file (it contains binary data)", field="file")
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("cp1252", errors="replace")


def parse_codes_csv(data: bytes) -> list[tuple[int, str]]:
    """(line, code) pairs from a shop's CSV export; raises ValidationError listing every bad line.

    The code column is found by its header (code, coupon, voucher, gutscheincode…); a file with a single column
    may have no header at all. Delimiters , ; and tab are recognized.
    """
    text = _decode(data)
    sample = text[:8192]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as exc:
        raise ValidationError(f"the CSV cannot be read: {exc}", field="file") from None
    rows = [(i, row) for i, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValidationError("the file has no codes", field="file")
    header = [cell.strip().lower().replace(" ", "_").replace("-", "_") for cell in rows[0][1]]
    column = next((header.index(h) for h in CODE_HEADERS if h in header), None)
    if column is not None:
        rows = rows[1:]
    elif max(len(r) for _, r in rows) == 1:
        column = 0
        if not CODE_PATTERN.fullmatch(rows[0][1][0].strip()):
            rows = rows[1:]       # a header we do not know, over one column of codes
    else:
        raise ValidationError("no column of codes found: name it “code” (columns: "
                              + ", ".join(c.strip() or "(empty)" for c in rows[0][1][:10]) + ")", field="file")
    if len(rows) > MAX_IMPORT:
        raise ValidationError(f"at most {MAX_IMPORT:,} codes per import; this file has {len(rows):,}", field="file")
    problems: list[str] = []
    seen: dict[str, int] = {}
    out: list[tuple[int, str]] = []
    for line, row in rows:
        code = row[column].strip() if column < len(row) else ""
        if not code:
            problems.append(f"line {line}: no code")
        elif not CODE_PATTERN.fullmatch(code):
            problems.append(f"line {line}: {code[:40]!r} is not a code (3-64 letters, digits, - _ .)")
        elif code.upper() in seen:
            problems.append(f"line {line}: {code} repeats line {seen[code.upper()]}")
        else:
            seen[code.upper()] = line
            out.append((line, code))
    if problems:
        raise ValidationError(_summary(problems, "nothing was imported"), field="file")
    if not out:
        raise ValidationError("the file has no codes", field="file")
    return out


def _summary(problems: Sequence[str], outcome: str) -> str:
    shown = "; ".join(problems[:10])
    more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
    return f"{len(problems)} problem{'s' if len(problems) != 1 else ''}, {outcome}: {shown}{more}"


def _existing(session: Session, codes: Sequence[str]) -> dict[str, int]:
    """Existing codes (upper-cased) among codes -> their pool id."""
    found: dict[str, int] = {}
    for i in range(0, len(codes), CHUNK):
        part = [c.upper() for c in codes[i:i + CHUNK]]
        for code, pool_id in session.execute(
                select(CouponCode.code, CouponCode.pool_id).where(func.upper(CouponCode.code).in_(part))):
            found[code.upper()] = pool_id
    return found


def _insert(session: Session, pool_id: int, codes: Sequence[str]) -> None:
    now = utcnow()
    for i in range(0, len(codes), CHUNK):
        session.execute(CouponCode.__table__.insert(), [
            {"pool_id": pool_id, "code": code, "note": "", "redeemed_reference": "", "redeemed_by": "",
             "created_at": now} for code in codes[i:i + CHUNK]])


def import_codes(session: Session, pool_id: int, data: bytes, *, skip_existing_in_pool: bool = False) -> ImportResult:
    """Add the codes of a CSV file to a pool: all of them or, when anything is wrong, none (with every reason)."""
    pool = get_pool(session, pool_id)
    rows = parse_codes_csv(data)
    existing = _existing(session, [c for _, c in rows])
    problems: list[str] = []
    fresh: list[str] = []
    skipped = 0
    for line, code in rows:
        owner = existing.get(code.upper())
        if owner is None:
            fresh.append(code)
        elif owner == pool.id and skip_existing_in_pool:
            skipped += 1
        elif owner == pool.id:
            problems.append(f"line {line}: {code} is already in this pool")
        else:
            problems.append(f"line {line}: {code} is already in another pool")
    if problems:
        hint = " Tick “skip codes already in this pool” to import the rest." if all(
            p.endswith("this pool") for p in problems) else ""
        raise ValidationError(_summary(problems, "nothing was imported") + "." + hint, field="file")
    _insert(session, pool.id, fresh)
    session.flush()
    logger.info("coupon pool %s: %d codes imported, %d already there", pool.id, len(fresh), skipped)
    return ImportResult(added=len(fresh), already_in_pool=skipped)


def generate_codes(session: Session, pool_id: int, count: int, length: int = 10, prefix: str = "") -> int:
    """Add count random codes (length characters of ALPHABET after an optional prefix); returns count."""
    pool = get_pool(session, pool_id)
    prefix = prefix.strip().upper()
    if prefix and not PREFIX_PATTERN.fullmatch(prefix):
        raise ValidationError("a prefix is up to 16 letters, digits and dashes, e.g. AUTUMN-", field="prefix")
    if not 1 <= count <= MAX_GENERATE:
        raise ValidationError(f"generate between 1 and {MAX_GENERATE:,} codes at a time", field="count")
    if not 6 <= length <= 32:
        raise ValidationError("codes are 6 to 32 characters long (after the prefix)", field="length")
    if len(prefix) + length > 64:
        raise ValidationError("prefix and code together are at most 64 characters", field="length")
    # Keep random codes hard to guess: the keyspace must dwarf the pool.
    if len(ALPHABET) ** length < count * 1_000_000:
        raise ValidationError(f"{length} characters are too few for {count:,} hard-to-guess codes; use more",
                              field="length")
    made: set[str] = set()
    while len(made) < count:
        batch = {prefix + "".join(secrets.choice(ALPHABET) for _ in range(length))
                 for _ in range(count - len(made))} - made
        taken = _existing(session, list(batch))
        made |= {c for c in batch if c.upper() not in taken}
    _insert(session, pool.id, sorted(made))
    session.flush()
    logger.info("coupon pool %s: %d codes generated", pool.id, count)
    return count
