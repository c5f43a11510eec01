"""Loyalty tiers: defining them, and keeping every contact's tier exact.

The rule (docs/loyalty.md): a tier has a minimum order value, a minimum number of orders and a period in days
(0: all time). A contact reaches a tier when, counting only their orders placed in the tier's period up to now,
the sum of the amounts is at least the minimum value and the count at least the minimum number of orders. Of the
tiers a contact reaches, the one with the highest rank is theirs (Contact.tier holds its name, "" for none).

When it is computed: in the transaction that records an order (campaigns.orders.recording), so the tier is exact
the moment the order is committed; nightly for everyone with orders or a tier (`recompute_tiers`, periodic task
"loyalty-tiers"), because a period rolls on without any order arriving and demotes; and after the tiers are edited.
Every change is a TierChange row (the contact page, the tier report, the "reached a new tier" automation).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from campaigns.errors import NotFound, ValidationError
from campaigns.models import Contact, CouponPool, LoyaltyTier, Order, TierChange, utcnow
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

MAX_TIERS = 20
MAX_VALUE = Decimal("9999999999.99")
CHUNK = 1000
REASON_ORDER = "order"
REASON_NIGHTLY = "nightly"
REASON_EDITED = "tiers changed"


@dataclass(frozen=True)
class TierRule:
    """A tier as the computation sees it (detached from the session)."""

    name: str
    rank: int
    min_value: Decimal
    min_orders: int
    period_days: int

    def reached(self, value: Decimal, count: int) -> bool:
        return value >= self.min_value and count >= self.min_orders

    def describe(self) -> str:
        parts = []
        if self.min_value > 0:
            parts.append(f"orders worth at least {self.min_value}")
        if self.min_orders > 0:
            parts.append(f"at least {self.min_orders} order{'s' if self.min_orders != 1 else ''}")
        what = " and ".join(parts) or "any contact with an order"
        when = f"in the last {self.period_days} days" if self.period_days else "in total"
        return f"{what} {when}" if parts else what


# ---------------------------------------------------------------- defining tiers

def list_tiers(session: Session) -> list[LoyaltyTier]:
    """Every tier, highest rank first."""
    return list(session.scalars(select(LoyaltyTier).order_by(LoyaltyTier.rank.desc())))


def rules(session: Session) -> list[TierRule]:
    """The tiers as rules, highest rank first."""
    return [TierRule(t.name, t.rank, t.min_value, t.min_orders, t.period_days) for t in list_tiers(session)]


def tier_names(session: Session) -> list[str]:
    """The tier names, highest rank first (segment pickers, coupon pools)."""
    return [t.name for t in list_tiers(session)]


def get_tier(session: Session, tier_id: int) -> LoyaltyTier:
    tier = session.get(LoyaltyTier, tier_id)
    if tier is None:
        raise NotFound(f"loyalty tier {tier_id} not found")
    return tier


def _int(data: Mapping[str, Any], name: str, lo: int, hi: int, label: str) -> int:
    raw = str(data.get(name, "") or "0").strip()
    if not raw.isdigit() or len(raw) > 7 or not lo <= int(raw) <= hi:
        raise ValidationError(f"{label} is a whole number from {lo} to {hi}", field=name)
    return int(raw)


def _amount(raw: Any) -> Decimal:
    try:
        value = Decimal(str(raw if raw not in (None, "") else "0").strip())
    except (InvalidOperation, ValueError):
        value = Decimal("NaN")
    if not value.is_finite() or value < 0 or value > MAX_VALUE or value != value.quantize(Decimal("0.01")):
        raise ValidationError(f"the minimum order value is an amount from 0 to {MAX_VALUE} such as 250.00",
                              field="min_value")
    return value.quantize(Decimal("0.01"))


def save_tier(session: Session, data: Mapping[str, Any], tier: LoyaltyTier | None = None) -> LoyaltyTier:
    """Create or update a tier from form values (name, rank, min_value, min_orders, period_days). Flushes; the
    caller commits and then recomputes everyone's tier (Job.RECOMPUTE_TIERS). A renamed tier is renamed on its
    contacts and coupon pools at once."""
    name = " ".join(str(data.get("name", "") or "").split())
    if not name or len(name) > 50 or "\x00" in name:
        raise ValidationError("give the tier a name of at most 50 characters, such as Gold", field="name")
    rank = _int(data, "rank", 1, 1000, "The rank")
    min_value = _amount(data.get("min_value"))
    min_orders = _int(data, "min_orders", 0, 100_000, "The minimum number of orders")
    period_days = _int(data, "period_days", 0, 3650, "The period")
    if min_value == 0 and min_orders == 0:
        min_orders = 1     # a tier asks for something: at least one order
    clash = session.scalar(select(LoyaltyTier.id).where(func.lower(LoyaltyTier.name) == name.lower()))
    if clash is not None and (tier is None or clash != tier.id):
        raise ValidationError(f"there is already a tier called {name}", field="name")
    clash = session.scalar(select(LoyaltyTier.id).where(LoyaltyTier.rank == rank))
    if clash is not None and (tier is None or clash != tier.id):
        raise ValidationError(f"another tier has rank {rank}; give each tier its own rank", field="rank")
    if tier is None:
        if session.scalar(select(func.count()).select_from(LoyaltyTier)) >= MAX_TIERS:
            raise ValidationError(f"a loyalty programme has at most {MAX_TIERS} tiers", field="name")
        tier = LoyaltyTier(name=name)
        session.add(tier)
    elif tier.name != name:
        _rename(session, tier.name, name)
    tier.name, tier.rank, tier.min_value = name, rank, min_value
    tier.min_orders, tier.period_days = min_orders, period_days
    session.flush()
    return tier


def _rename(session: Session, old: str, new: str) -> None:
    session.execute(update(Contact).where(Contact.tier == old).values(tier=new)
                    .execution_options(synchronize_session=False))
    for pool in session.scalars(select(CouponPool)):
        if old in (pool.tiers or []):
            pool.tiers = [new if t == old else t for t in pool.tiers]


def delete_tier(session: Session, tier: LoyaltyTier) -> None:
    """Remove a tier; its contacts keep the name until the recompute that follows (the caller enqueues it)."""
    for pool in session.scalars(select(CouponPool)):
        if tier.name in (pool.tiers or []):
            pool.tiers = [t for t in pool.tiers if t != tier.name]
    session.delete(tier)
    session.flush()


# ---------------------------------------------------------------- computing tiers

def figures(session: Session, contact_ids: Sequence[int], period_days: int,
            now: dt.datetime) -> dict[int, tuple[Decimal, int]]:
    """contact id -> (order value, order count) of the orders placed in the last period_days before now (0: all
    time); an order a shop dated a little ahead (recording allows up to a day) counts at once."""
    stmt = (select(Order.contact_id, func.coalesce(func.sum(Order.amount), 0), func.count(Order.id))
            .where(Order.contact_id.in_(list(contact_ids))).group_by(Order.contact_id))
    if period_days:
        stmt = stmt.where(Order.ordered_at > now - dt.timedelta(days=period_days))
    return {cid: (Decimal(str(value)).quantize(Decimal("0.01")), int(count))
            for cid, value, count in session.execute(stmt)}


def compute(session: Session, tiers: Sequence[TierRule], contact_ids: Sequence[int],
            now: dt.datetime) -> dict[int, TierRule | None]:
    """The tier each contact has reached as of now (None: none)."""
    by_period = {days: figures(session, contact_ids, days, now) for days in {t.period_days for t in tiers}}
    out: dict[int, TierRule | None] = {}
    for cid in contact_ids:
        out[cid] = next((t for t in tiers   # highest rank first
                         if t.reached(*by_period[t.period_days].get(cid, (Decimal("0.00"), 0)))), None)
    return out


def recompute(session: Session, contact_ids: Iterable[int], *, reason: str,
              now: dt.datetime | None = None, tiers: Sequence[TierRule] | None = None) -> list[TierChange]:
    """Set these contacts' tiers as of now and record each change; flushes, the caller commits."""
    now = now or utcnow()
    ids = sorted(set(contact_ids))
    if not ids:
        return []
    tiers = rules(session) if tiers is None else tiers
    rank_of = {t.name: t.rank for t in tiers}
    # Lock the contacts first (PostgreSQL: FOR NO KEY UPDATE, in id order), then sum: two orders of one customer
    # recorded at the same moment take turns, and the second sums with the first one's order committed.
    current = dict(session.execute(select(Contact.id, Contact.tier).where(Contact.id.in_(ids))
                                   .order_by(Contact.id).with_for_update(key_share=True)).all())
    reached = compute(session, tiers, ids, now)
    changes: list[TierChange] = []
    for cid in ids:
        if cid not in current:
            continue
        new = reached[cid]
        name = new.name if new else ""
        if name == (current[cid] or ""):
            continue
        changes.append(TierChange(contact_id=cid, from_tier=current[cid] or "", to_tier=name,
                                  rank_from=rank_of.get(current[cid] or "", 0), rank_to=new.rank if new else 0,
                                  reason=reason[:100], changed_at=now))
    if changes:
        session.execute(update(Contact), [{"id": c.contact_id, "tier": c.to_tier} for c in changes])
        session.add_all(changes)
        session.flush()
        for change in changes:     # loaded contacts see their new tier (the bulk UPDATE bypassed them)
            loaded = session.identity_map.get((Contact, (change.contact_id,), None))
            if loaded is not None:
                session.expire(loaded, ["tier"])
    return changes


def recompute_all(rt: Runtime, *, reason: str = REASON_NIGHTLY, now: dt.datetime | None = None) -> dict[str, int]:
    """Recompute the tier of everyone with an order or a tier, a chunk of contacts per transaction (the nightly
    task and the job after tiers are edited); returns counts."""
    now = now or utcnow()
    after = 0
    seen = promoted = demoted = 0
    with rt.session_factory() as session:
        if not session.scalar(select(func.count()).select_from(LoyaltyTier)) and \
                session.scalar(select(Contact.id).where(Contact.tier != "").limit(1)) is None:
            return {"contacts": 0, "promoted": 0, "demoted": 0}     # no programme: nothing to walk through
    with_orders = select(Order.contact_id).where(Order.contact_id == Contact.id).exists()
    while True:
        with rt.session_factory() as session:
            ids = list(session.scalars(select(Contact.id).where(Contact.id > after,
                                                                or_(Contact.tier != "", with_orders))
                                       .order_by(Contact.id).limit(CHUNK)))
            if not ids:
                break
            changes = recompute(session, ids, reason=reason, now=now)
            session.commit()
        seen += len(ids)
        promoted += sum(1 for c in changes if c.rank_to > c.rank_from)
        demoted += sum(1 for c in changes if c.rank_to <= c.rank_from)     # to a lower tier, or a deleted one's end
        after = ids[-1]
    if promoted or demoted:
        logger.info("loyalty tiers (%s): %d promoted, %d demoted of %d contacts", reason, promoted, demoted, seen)
    return {"contacts": seen, "promoted": promoted, "demoted": demoted}


# ---------------------------------------------------------------- reading changes

def changes_of(session: Session, contact_id: int, limit: int = 20) -> list[TierChange]:
    """A contact's tier changes, newest first."""
    return list(session.scalars(select(TierChange).where(TierChange.contact_id == contact_id)
                                .order_by(TierChange.changed_at.desc(), TierChange.id.desc()).limit(limit)))


@dataclass(frozen=True)
class TierReport:
    """The tier report: contacts per tier now (None: not counted here), and the changes of the last `days` days."""

    counts: list[tuple[str, int | None]]
    promoted: int
    demoted: int
    recent: list[tuple[TierChange, str]]      # (change, contact email), newest first
    days: int


def tier_counts(session: Session) -> dict[str, int]:
    """Contacts per tier name ("" for none): one pass over the index of contact.tier."""
    return {tier or "": int(n) for tier, n in session.execute(select(Contact.tier, func.count())
                                                                 .group_by(Contact.tier))}


def report(session: Session, days: int = 30, limit: int = 100, now: dt.datetime | None = None, *,
           per: Mapping[str, int] | None = None, count: bool = True) -> TierReport:
    """The report; the contacts per tier counted here when `count`, else taken from `per` (a big list's counts come
    from a background summary; None while it is being counted)."""
    now = now or utcnow()
    since = now - dt.timedelta(days=days)
    if count:
        per = tier_counts(session)
    counts: list[tuple[str, int | None]] = [
        (name, None if per is None else int(per.get(name, 0))) for name in [t.name for t in list_tiers(session)] + [""]]
    moves = dict(session.execute(
        select(TierChange.rank_to > TierChange.rank_from, func.count())
        .where(TierChange.changed_at >= since).group_by(TierChange.rank_to > TierChange.rank_from)).all())
    recent = [(c, email) for c, email in session.execute(
        select(TierChange, Contact.email).join(Contact, Contact.id == TierChange.contact_id)
        .where(TierChange.changed_at >= since)
        .order_by(TierChange.changed_at.desc(), TierChange.id.desc()).limit(limit))]
    return TierReport(counts, int(moves.get(True, 0)), int(moves.get(False, 0)), recent, days)
