"""Coupon pools: import or generate codes, assign one per recipient at send time, redeem, report.

Assignment is set-based and safe with many workers: free codes are claimed with one UPDATE … WHERE id IN (SELECT …
FOR UPDATE SKIP LOCKED) on PostgreSQL (SQLite serializes writers with BEGIN IMMEDIATE), and (campaign, contact) is
unique, so a retried message finds the code it already has and two people never share one.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import logging
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session

from campaigns.db import parse_id
from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import (
    Campaign,
    CampaignStatus,
    CouponApiToken,
    CouponCode,
    CouponPool,
    Send,
    SendStatus,
    utcnow,
)
from campaigns.sending import policy as policy_service
from mailer.compose import TemplateError

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
SAMPLE = {"code": "SAMPLE-CODE", "expires": "", "expires_on": "", "value": ""}


class OutOfCodes(RapportError):
    """The pool has fewer free codes than recipients waiting for one."""


@dataclass(frozen=True)
class ImportResult:
    """What an import added and what it left out on purpose."""

    added: int
    already_in_pool: int


# ---------------------------------------------------------------- pools

def get_pool(session: Session, pool_id: int) -> CouponPool:
    """Load one pool or raise NotFound."""
    pool = session.get(CouponPool, pool_id)
    if pool is None:
        raise NotFound(f"coupon pool {pool_id} not found")
    return pool


def list_pools(session: Session) -> list[CouponPool]:
    """All pools, newest first."""
    return list(session.scalars(select(CouponPool).order_by(CouponPool.id.desc())))


def _parse_date(raw: Any) -> dt.date:
    if isinstance(raw, dt.date):
        return raw
    text = str(raw or "").strip()
    if not text:
        raise ValidationError("give the codes an expiry date", field="expires_on")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{text!r} is not a date like 2026-12-31", field="expires_on") from None


def save_pool(session: Session, data: Mapping[str, Any], pool: CouponPool | None = None) -> CouponPool:
    """Create or update a pool from form-like data (name, value_description, expires_on)."""
    name = str(data.get("name", "") or "").strip()
    value = str(data.get("value_description", "") or "").strip()
    if not name:
        raise ValidationError("give the pool a name", field="name")
    if len(name) > 200 or len(value) > 200:
        raise ValidationError("name and value description are limited to 200 characters", field="name")
    if not value:
        raise ValidationError("describe what a code is worth, e.g. “15% off your next order”",
                              field="value_description")
    expires = _parse_date(data.get("expires_on"))
    # A pool that has expired since keeps its date on edit; a new or changed date must still be valid.
    if expires < dt.date.today() and (pool is None or expires != pool.expires_on):
        raise ValidationError(f"valid until {expires}: that day has passed, so every code would be expired at "
                              "once; choose today or a later day", field="expires_on")
    clash = session.scalar(select(CouponPool.id).where(func.lower(CouponPool.name) == name.lower()))
    if clash is not None and (pool is None or clash != pool.id):
        raise ValidationError(f"there is already a pool called {name}", field="name")
    if pool is None:
        pool = CouponPool()
        session.add(pool)
    pool.name, pool.value_description, pool.expires_on = name, value, expires
    session.flush()
    return pool


def pool_counts(session: Session, pool_ids: Iterable[int] | None = None) -> dict[int, dict[str, int]]:
    """Per pool: total, free, issued, redeemed codes."""
    stmt = select(
        CouponCode.pool_id, func.count(),
        func.sum(case((CouponCode.assigned_at.is_(None) & CouponCode.redeemed_at.is_(None), 1), else_=0)),
        func.sum(case((CouponCode.assigned_at.is_not(None), 1), else_=0)),
        func.sum(case((CouponCode.redeemed_at.is_not(None), 1), else_=0)),
    ).group_by(CouponCode.pool_id)
    if pool_ids is not None:
        stmt = stmt.where(CouponCode.pool_id.in_(list(pool_ids)))
    return {pid: {"total": total, "free": int(free or 0), "issued": int(issued or 0), "redeemed": int(red or 0)}
            for pid, total, free, issued, red in session.execute(stmt)}


def usable_pools(session: Session) -> list[tuple[CouponPool, int]]:
    """(pool, free codes) of the pools a single code can come from now: not expired, not empty."""
    pools = [p for p in list_pools(session) if not p.expired]
    counts = pool_counts(session, [p.id for p in pools])
    return [(p, counts[p.id]["free"]) for p in pools if counts.get(p.id, {}).get("free")]


def free_count(session: Session, pool_id: int) -> int:
    """Codes of the pool nobody has yet."""
    return session.scalar(select(func.count()).select_from(CouponCode).where(
        CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_(None), CouponCode.redeemed_at.is_(None))) or 0


# ---------------------------------------------------------------- import and generate

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
    session.commit()
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
    session.commit()
    logger.info("coupon pool %s: %d codes generated", pool.id, count)
    return count


# ---------------------------------------------------------------- assignment at send time

def _expires_text(pool: CouponPool) -> str:
    return f"{pool.expires_on.day} {pool.expires_on:%B %Y}"


def coupon_vars(pool: CouponPool, code: str) -> dict[str, str]:
    """What templates see as `coupon`: code, expires (a readable date), expires_on (ISO) and value."""
    return {"code": code, "expires": _expires_text(pool), "expires_on": pool.expires_on.isoformat(),
            "value": pool.value_description}


def sample_vars(pool: CouponPool | None) -> dict[str, str]:
    """Coupon values for previews and test sends: no real code is used up."""
    return coupon_vars(pool, "SAMPLE-CODE") if pool is not None else dict(SAMPLE)


def _claim_free(session: Session, pool_id: int, campaign_id: int, n: int) -> list[int]:
    """Mark up to n free codes as this campaign's (contact set by the caller in the same transaction)."""
    pick = (select(CouponCode.id).where(CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_(None),
                                        CouponCode.redeemed_at.is_(None))
            .order_by(CouponCode.id).limit(n))
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = session.execute(
        update(CouponCode).where(CouponCode.id.in_(pick.scalar_subquery()))
        .values(campaign_id=campaign_id, assigned_at=utcnow())
        .returning(CouponCode.id).execution_options(synchronize_session=False)).all()
    return sorted(r[0] for r in rows)


def assign_codes(session: Session, pool_id: int, campaign_id: int,
                 recipients: Sequence[tuple[int, int]]) -> tuple[dict[int, str], list[int]]:
    """Give each (send_id, contact_id) one code of the pool, keeping the code a recipient already has.

    Returns ({contact_id: code}, [contact ids left without a code because the pool ran dry]); commits.
    """
    by_contact = {contact_id: send_id for send_id, contact_id in recipients}
    if not by_contact:
        return {}, []
    have = dict(session.execute(select(CouponCode.contact_id, CouponCode.code).where(
        CouponCode.campaign_id == campaign_id, CouponCode.contact_id.in_(list(by_contact)))).all())
    need = [cid for cid in sorted(by_contact) if cid not in have]
    while need:
        ids = _claim_free(session, pool_id, campaign_id, len(need))
        if not ids:
            break   # PostgreSQL can return fewer rows than asked when others claimed at the same time; retry
        pairs = list(zip(ids, need, strict=False))
        session.execute(update(CouponCode), [{"id": code_id, "contact_id": cid, "send_id": by_contact[cid]}
                                             for code_id, cid in pairs])
        codes = dict(session.execute(select(CouponCode.id, CouponCode.code).where(
            CouponCode.id.in_([code_id for code_id, _ in pairs]))).all())
        for code_id, cid in pairs:
            have[cid] = codes[code_id]
        need = need[len(pairs):]
    session.commit()
    return have, need


def issue_code(session: Session, pool_id: int, contact_id: int, note: str) -> dict[str, str]:
    """Give one contact a code outside a campaign (e.g. an apology mail); returns the template's coupon vars."""
    pool = get_pool(session, pool_id)
    if pool.expires_on < dt.date.today():
        raise ValidationError(f"the pool {pool.name} expired on {pool.expires_on}", field="coupon_pool")
    for _ in range(5):
        pick = (select(CouponCode.id).where(CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_(None),
                                            CouponCode.redeemed_at.is_(None)).order_by(CouponCode.id).limit(1))
        if session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        row = session.execute(
            update(CouponCode).where(CouponCode.id.in_(pick.scalar_subquery()))
            .values(contact_id=contact_id, assigned_at=utcnow(), note=note[:200])
            .returning(CouponCode.code).execution_options(synchronize_session=False)).first()
        if row is not None:
            session.commit()
            return coupon_vars(pool, row[0])
        if not free_count(session, pool_id):
            break
    raise OutOfCodes(f"the coupon pool {pool.name} has no free codes left")


@dataclass
class BatchCoupons:
    """A campaign's pool as its batch jobs see it: assigns codes per claim, before anything is rendered."""

    pool_id: int
    campaign_id: int
    pool_name: str
    expires_on: dt.date
    template_vars: dict[str, str]   # coupon vars without the code

    @classmethod
    def for_campaign(cls, session: Session, campaign: Campaign) -> BatchCoupons | None:
        """None when the campaign draws from no pool."""
        if not campaign.coupon_pool_id:
            return None
        pool = session.get(CouponPool, campaign.coupon_pool_id)
        if pool is None:
            return None
        return cls(pool.id, campaign.id, pool.name, pool.expires_on, coupon_vars(pool, ""))

    def assign(self, session: Session, recipients: Sequence[tuple[int, int]]) -> tuple[dict[int, dict], str]:
        """({contact_id: coupon vars}, pause reason or ""); recipients left without a code must not be sent."""
        if self.expires_on < dt.date.today():
            return {}, (f"the coupons of pool “{self.pool_name}” expired on {self.expires_on}: "
                        "choose another pool or cancel the campaign")
        codes, missing = assign_codes(session, self.pool_id, self.campaign_id, recipients)
        reason = ""
        if missing:
            reason = (f"the coupon pool “{self.pool_name}” ran out of codes: {len(missing)} recipient"
                      f"{'s' if len(missing) != 1 else ''} in this batch got nothing; add codes, then resume")
        return {cid: dict(self.template_vars, code=code) for cid, code in codes.items()}, reason


    def assign_claim(self, session: Session, claimed: Sequence[tuple[int, int, int]], eligible: set[int],
                     held: Mapping[int, str]) -> tuple[dict[int, dict], list[tuple[int, int, int]]]:
        """Codes for the claim's recipients who will be sent now; the rest of the claim, without those left
        without a code: their sends go back to the queue and the campaign pauses (committed here)."""
        recipients = [(sid, cid) for sid, cid, _a in claimed if cid in eligible and cid not in held]
        coupons, reason = self.assign(session, recipients)
        if not reason:
            return coupons, list(claimed)
        unsent = [sid for sid, cid in recipients if cid not in coupons]
        requeue(session, self.campaign_id, unsent, reason)
        dropped = set(unsent)
        return coupons, [row for row in claimed if row[0] not in dropped]

    def vars_for(self, coupon_of: Mapping[int, dict], send_id: int, contact_id: int) -> dict[str, str]:
        """The recipient's coupon; a sample for test sends (send id 0), never a real message without a code."""
        if not send_id:
            return dict(self.template_vars, code="SAMPLE-CODE")
        coupon = coupon_of.get(contact_id)
        if coupon is None:
            raise TemplateError("no coupon code was assigned to this recipient")
        return coupon


def requeue(session: Session, campaign_id: int, send_ids: Sequence[int], reason: str) -> None:
    """Put claimed sends back (they were not sent) and pause the running campaign with reason; commits."""
    if send_ids:
        session.execute(update(Send).where(Send.id.in_(list(send_ids)), Send.status == SendStatus.SENDING)
                        .values(status=SendStatus.QUEUED, claimed_at=None, attempts=Send.attempts - 1,
                                last_error=reason[:1000]))
        policy_service.unreserve(session, send_ids)
    session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.RUNNING)
                    .values(status=CampaignStatus.PAUSED, status_reason=reason))
    session.commit()
    logger.warning("campaign %s paused: %s", campaign_id, reason)


# ---------------------------------------------------------------- redemption

class RedeemError(RapportError):
    """A code cannot be redeemed; status is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or {}


def code_status(code: CouponCode, pool: CouponPool, today: dt.date | None = None) -> str:
    """free, issued, redeemed or expired."""
    if code.redeemed_at is not None:
        return "redeemed"
    if pool.expires_on < (today or dt.date.today()):
        return "expired"
    return "issued" if code.assigned_at is not None else "free"


def find_code(session: Session, raw: str) -> tuple[CouponCode, CouponPool]:
    """Look a code up regardless of case and surrounding spaces; raises RedeemError (404)."""
    text = (raw or "").strip()
    if not text or len(text) > 64:
        raise RedeemError("give the code to look up", 400)
    row = session.execute(select(CouponCode, CouponPool).join(CouponPool, CouponPool.id == CouponCode.pool_id)
                          .where(func.upper(CouponCode.code) == text.upper())).first()
    if row is None:
        raise RedeemError(f"no code {text} is known", 404)
    return row[0], row[1]


def describe(code: CouponCode, pool: CouponPool) -> dict[str, Any]:
    """JSON-ready facts about a code."""
    return {"code": code.code, "status": code_status(code, pool), "pool": pool.name,
            "value": pool.value_description, "expires_on": pool.expires_on.isoformat(),
            "issued": code.assigned_at is not None, "campaign_id": code.campaign_id,
            "redeemed_at": code.redeemed_at.isoformat() if code.redeemed_at else None,
            "reference": code.redeemed_reference or None}


def redeem(session: Session, raw_code: str, *, reference: str = "", by: str = "") -> dict[str, Any]:
    """Mark a code redeemed once; raises RedeemError for unknown (404), used (409) or expired (410) codes."""
    reference = (reference or "").strip()
    if len(reference) > 200:
        raise RedeemError("the reference is limited to 200 characters", 400)
    code, pool = find_code(session, raw_code)
    if pool.expires_on < dt.date.today():
        raise RedeemError(f"code {code.code} expired on {pool.expires_on}", 410, describe(code, pool))
    # One conditional UPDATE: two shop calls for the same code at once cannot both succeed.
    done = session.execute(update(CouponCode).where(CouponCode.id == code.id, CouponCode.redeemed_at.is_(None))
                           .values(redeemed_at=utcnow(), redeemed_reference=reference, redeemed_by=by[:200])
                           .execution_options(synchronize_session=False)).rowcount
    session.commit()
    session.refresh(code)
    if not done:
        raise RedeemError(f"code {code.code} was already redeemed", 409, describe(code, pool))
    logger.info("coupon %s redeemed (%s)", code.id, by)
    return describe(code, pool)


# ---------------------------------------------------------------- API tokens

def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, name: str, created_by: str = "") -> str:
    """A new bearer token for the shop system; returned once, only its hash is kept."""
    name = (name or "").strip()[:200]
    if not name:
        raise ValidationError("name the token after the system that uses it, e.g. “shop”", field="token_name")
    token = "rpc_" + secrets.token_urlsafe(32)
    session.add(CouponApiToken(name=name, token_hash=_hash_token(token), created_by=created_by))
    session.commit()
    return token


def list_api_tokens(session: Session) -> list[CouponApiToken]:
    return list(session.scalars(select(CouponApiToken).order_by(CouponApiToken.id)))


def revoke_api_token(session: Session, token_id: int) -> None:
    """Delete a token: the shop's next call with it is refused."""
    row = session.get(CouponApiToken, token_id)
    if row is None:
        raise NotFound("that token does not exist")
    session.delete(row)
    session.commit()


def authenticate(session: Session, presented: str, configured: str = "") -> str | None:
    """The name of the token presented (or "settings" for a configured one), None when it matches nothing.

    Compared in constant time: the hash of the presented token against every stored hash.
    """
    presented = (presented or "").strip()
    if not presented or len(presented) > 200:
        return None
    if configured and hmac.compare_digest(presented.encode(), configured.encode()):
        return "settings"
    digest = _hash_token(presented)
    match = None
    for row in list_api_tokens(session):
        if hmac.compare_digest(digest, row.token_hash):
            match = row
    if match is None:
        return None
    match.last_used_at = utcnow()
    session.commit()
    return match.name


# ---------------------------------------------------------------- reports

def campaign_stats(session: Session, campaign_id: int) -> dict[str, Any] | None:
    """Coupons of one campaign: issued, delivered, redeemed, expired, redemption rate; None without coupons."""
    today = dt.date.today()
    row = session.execute(
        select(func.count(), func.sum(case((CouponCode.redeemed_at.is_not(None), 1), else_=0)),
               func.sum(case((and_(CouponCode.redeemed_at.is_(None), CouponPool.expires_on < today), 1), else_=0)),
               func.sum(case((Send.status == SendStatus.SENT, 1), else_=0)))
        .select_from(CouponCode).join(CouponPool, CouponPool.id == CouponCode.pool_id)
        .outerjoin(Send, and_(Send.campaign_id == CouponCode.campaign_id, Send.contact_id == CouponCode.contact_id))
        .where(CouponCode.campaign_id == campaign_id, CouponCode.contact_id.is_not(None))).one()
    issued, redeemed, expired, delivered = row[0] or 0, int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)
    campaign = session.get(Campaign, campaign_id)
    if not issued and (campaign is None or not campaign.coupon_pool_id):
        return None
    return {"campaign_id": campaign_id, "name": campaign.name if campaign else "", "issued": issued,
            "delivered": delivered, "redeemed": redeemed, "expired": expired,
            "redemption_rate": round(redeemed / issued, 4) if issued else 0.0}


def pool_report(session: Session, pool_id: int) -> list[dict[str, Any]]:
    """Per campaign that drew from the pool (and "outside campaigns"): issued, redeemed, expired, rate."""
    pool = get_pool(session, pool_id)
    expired_now = pool.expires_on < dt.date.today()
    rows = session.execute(
        select(CouponCode.campaign_id, Campaign.name, func.count(),
               func.sum(case((CouponCode.redeemed_at.is_not(None), 1), else_=0)))
        .outerjoin(Campaign, Campaign.id == CouponCode.campaign_id)
        .where(CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_not(None))
        .group_by(CouponCode.campaign_id, Campaign.name).order_by(CouponCode.campaign_id)).all()
    out = []
    for campaign_id, name, issued, redeemed in rows:
        redeemed = int(redeemed or 0)
        out.append({"campaign_id": campaign_id, "name": name or "outside campaigns (single codes)",
                    "issued": issued, "redeemed": redeemed, "expired": issued - redeemed if expired_now else 0,
                    "redemption_rate": round(redeemed / issued, 4) if issued else 0.0})
    return out


def recent_codes(session: Session, pool_id: int, limit: int = 20) -> list[CouponCode]:
    """The most recently issued or redeemed codes of a pool."""
    return list(session.scalars(select(CouponCode).where(
        CouponCode.pool_id == pool_id, CouponCode.assigned_at.is_not(None))
        .order_by(func.coalesce(CouponCode.redeemed_at, CouponCode.assigned_at).desc()).limit(limit)))


# ---------------------------------------------------------------- campaign form

_USES_COUPON = re.compile(r"\{\{[^}]*\bcoupon\b")


def chosen_pool(session: Session, data: Mapping[str, Any], campaign: Campaign | None, content: str) -> int | None:
    """The coupon pool a campaign form chose ("" = none; absent = keep); content that shows a coupon needs one."""
    if "coupon_pool_id" in data:
        raw = str(data.get("coupon_pool_id") or "").strip()
        pool_id = None
        if raw:
            if (pool_id := parse_id(raw)) is None or session.get(CouponPool, pool_id) is None:
                raise ValidationError("the chosen coupon pool does not exist (any more)", field="coupon_pool_id")
    else:
        pool_id = campaign.coupon_pool_id if campaign is not None else None
    if pool_id is None and _USES_COUPON.search(content):
        raise ValidationError("the content shows {{ coupon… }} but no coupon pool is chosen: choose the pool its "
                              "codes come from", field="coupon_pool_id")
    return pool_id
