"""Post-purchase automations (trigger "order"): which orders start one, when each step falls due, per-order runs.

Every order, whatever recorded it (POST /api/v1/orders, a Shopify or WooCommerce webhook, the admin, an import), is a
row in the order table. On each tick campaigns.automations.runs asks due_orders() which orders each step has due now
(ordered_at + the step's delay has passed, within ORDER_GRACE, and the order is not older than the moment the
automation was switched on, so switching it on never mails last year's buyers). Each (step, order) is a row of
AutomationOrderOccurrence with a unique key, inserted ON CONFLICT DO NOTHING: only the rows a tick inserted are
sent, so a retried webhook (the order is recorded once per shop id anyway), repeated or concurrent ticks and restarts
never send a step twice for one order. A step's mail goes out through its run campaign and the normal send path:
a transactional thank-you is exempt from the contact policy's caps but never reaches a suppressed address; nurture
follow-ups are checked against subscription and the policy at send time and may be held or skipped, which the
automation page shows per order (order_runs).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from campaigns.automations.triggers import delay, delay_label, zone
from campaigns.errors import ValidationError
from campaigns.models import (
    Automation,
    AutomationOccurrence,
    AutomationOrderOccurrence,
    AutomationRun,
    AutomationStep,
    Contact,
    Order,
    OrderTag,
    Send,
    SendStatus,
    utcnow,
)

ORDER_GRACE = dt.timedelta(days=2)        # a step still goes out this long after it fell due (a worker was down)
MAX_DELAY_HOURS = 365 * 24
MAX_AMOUNT = Decimal("9999999999.99")
_DELAY = re.compile(r"(\d{1,5})([hd]?)")


# ---------------------------------------------------------------- settings

def parse_delay(raw: Any, field: str) -> tuple[int, int]:
    """A step's delay after the order, written `4h` (hours), `3d` or `3` (days); returns (days, hours)."""
    text = "".join(str(raw or "").split()).lower()
    if not text:
        return 0, 0
    match = _DELAY.fullmatch(text)
    if match is None:
        raise ValidationError("write the delay after the order as hours or days, such as 0, 4h or 3d", field=field)
    hours = int(match.group(1)) * (1 if match.group(2) == "h" else 24)
    if hours > MAX_DELAY_HOURS:
        raise ValidationError("a step goes out at most 365 days after the order", field=field)
    days, rest = divmod(hours, 24)
    return days, rest


def delay_text(step: AutomationStep) -> str:
    """The delay as the form shows it: 0, 4h or 3d."""
    if step.delay_hours:
        return f"{step.delay_days * 24 + step.delay_hours}h"
    return f"{step.delay_days}d" if step.delay_days else "0"


def _amount(data: Mapping[str, Any], name: str, label: str) -> Decimal | None:
    raw = str(data.get(name, "") or "").strip()
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{label} is an amount such as 50 or 49.90", field=name) from None
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT or value != value.quantize(Decimal("0.01")):
        raise ValidationError(f"{label} is an amount from 0 to {MAX_AMOUNT} with at most two decimals", field=name)
    return value.quantize(Decimal("0.01"))


def apply_filters(automation: Automation, data: Mapping[str, Any]) -> None:
    """Set which orders start the automation from form values (amount bounds, product tag, first order only)."""
    low = _amount(data, "min_amount", "The minimum amount")
    high = _amount(data, "max_amount", "The maximum amount")
    if low is not None and high is not None and low > high:
        raise ValidationError("the minimum amount is above the maximum amount", field="min_amount")
    tag = " ".join(str(data.get("product_tag", "") or "").split()).lower()
    if len(tag) > 100 or "\x00" in tag:
        raise ValidationError("a product tag is at most 100 characters", field="product_tag")
    automation.min_amount, automation.max_amount, automation.product_tag = low, high, tag
    automation.first_order_only = str(data.get("first_order_only", "")).lower() in ("1", "on", "true", "yes")


# ---------------------------------------------------------------- who is due

def order_conditions(automation: Automation) -> list:
    """WHERE clauses on Order: the automation's filters."""
    conds: list = []
    if automation.min_amount is not None:
        conds.append(Order.amount >= automation.min_amount)
    if automation.max_amount is not None:
        conds.append(Order.amount <= automation.max_amount)
    if automation.product_tag:
        conds.append(exists().where(OrderTag.order_id == Order.id, OrderTag.tag == automation.product_tag))
    if automation.first_order_only:
        earlier = aliased(Order)
        before = or_(earlier.ordered_at < Order.ordered_at,
                     and_(earlier.ordered_at == Order.ordered_at, earlier.id < Order.id))
        conds.append(~exists().where(earlier.contact_id == Order.contact_id, before))
    return conds


def due_orders(session: Session, automation: Automation, step: AutomationStep,
               now: dt.datetime) -> dict[dt.date, list[tuple[int, int]]]:
    """For one step: occurrence date (the contact's local date it fell due) -> (order id, contact id) due now that
    have no occurrence of this step yet."""
    wait = delay(step)
    latest = now - wait
    earliest = max(latest - ORDER_GRACE, automation.activated_at or now)
    done = exists().where(AutomationOrderOccurrence.step_id == step.id, AutomationOrderOccurrence.order_id == Order.id)
    rows = session.execute(
        select(Order.id, Order.contact_id, Order.ordered_at, Contact.timezone)
        .join(Contact, Contact.id == Order.contact_id)
        .where(Order.ordered_at >= earliest, Order.ordered_at <= latest, ~done, *order_conditions(automation))
        .order_by(Order.id)).all()
    due: dict[dt.date, list[tuple[int, int]]] = defaultdict(list)
    for order_id, contact_id, when, tzname in rows:
        due[(when + wait).astimezone(zone(tzname)).date()].append((order_id, contact_id))
    return due


def insert_occurrences(session: Session, automation_id: int, step_id: int, run_id: int,
                       pairs: list[tuple[int, int]]) -> list[int]:
    """Insert (step, order) occurrences; returns the contacts of the rows that are new. The caller commits."""
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    new: list[int] = []
    now = utcnow()
    for i in range(0, len(pairs), 1000):
        rows = [{"automation_id": automation_id, "step_id": step_id, "order_id": order_id, "contact_id": contact_id,
                 "run_id": run_id, "created_at": now} for order_id, contact_id in pairs[i:i + 1000]]
        stmt = dialect_insert(AutomationOrderOccurrence).values(rows).on_conflict_do_nothing(
            index_elements=["step_id", "order_id"]).returning(AutomationOrderOccurrence.contact_id)
        new.extend(session.scalars(stmt))
    return new


def missing_sends(session: Session, occurrences: type[AutomationOccurrence] | type[AutomationOrderOccurrence],
                  automation_id: int, since: dt.datetime) -> dict[int, list[int]]:
    """Occurrences (dated or per order) created after `since` whose send row is missing (a crash between the two
    commits), by run campaign."""
    has_send = exists().where(Send.campaign_id == AutomationRun.campaign_id,
                              Send.contact_id == occurrences.contact_id)
    rows = session.execute(
        select(AutomationRun.campaign_id, occurrences.contact_id)
        .join(AutomationRun, AutomationRun.id == occurrences.run_id)
        .where(occurrences.automation_id == automation_id, AutomationRun.campaign_id.is_not(None),
               occurrences.created_at > since, ~has_send)).all()
    by_campaign: dict[int, list[int]] = defaultdict(list)
    for campaign_id, contact_id in rows:
        by_campaign[campaign_id].append(contact_id)
    return by_campaign


# ---------------------------------------------------------------- per-order runs

@dataclass(frozen=True)
class StepOutcome:
    label: str             # "at once", "after 3 days"
    state: str             # sent, queued, held, skipped, failed, unknown, due, missed
    detail: str = ""       # why held or skipped; when due
    campaign_id: int | None = None


@dataclass(frozen=True)
class OrderRunRow:
    order: Order
    email: str
    steps: list[StepOutcome]


def order_runs(session: Session, automation: Automation, now: dt.datetime | None = None,
               limit: int = 50) -> list[OrderRunRow]:
    """The orders that started the automation, newest first, with what became of each step's mail."""
    now = now or utcnow()
    steps = list(automation.steps)
    order_ids = list(session.scalars(
        select(AutomationOrderOccurrence.order_id).where(AutomationOrderOccurrence.automation_id == automation.id)
        .group_by(AutomationOrderOccurrence.order_id).order_by(AutomationOrderOccurrence.order_id.desc())
        .limit(limit)))
    if not order_ids:
        return []
    orders = session.execute(select(Order, Contact.email).join(Contact, Contact.id == Order.contact_id)
                             .where(Order.id.in_(order_ids)).order_by(Order.id.desc())).all()
    found: dict[tuple[int, int], tuple[int | None, str, str, str]] = {}
    for order_id, step_id, campaign_id, status, reason, note in session.execute(
            select(AutomationOrderOccurrence.order_id, AutomationOrderOccurrence.step_id, AutomationRun.campaign_id,
                   Send.status, Send.reason, Send.last_error)
            .join(AutomationRun, AutomationRun.id == AutomationOrderOccurrence.run_id)
            .outerjoin(Send, and_(Send.campaign_id == AutomationRun.campaign_id,
                                  Send.contact_id == AutomationOrderOccurrence.contact_id))
            .where(AutomationOrderOccurrence.order_id.in_(order_ids),
                   AutomationOrderOccurrence.automation_id == automation.id)):
        found[(order_id, step_id)] = (campaign_id, status or SendStatus.QUEUED.value, reason or "", note or "")
    result = []
    for order, email in orders:
        outcomes = []
        for step in steps:
            label = delay_label(step)
            if (order.id, step.id) in found:
                campaign_id, status, reason, note = found[(order.id, step.id)]
                state = SendStatus.QUEUED.value if status == SendStatus.SENDING else status
                detail = note or reason if state in (SendStatus.HELD, SendStatus.SKIPPED, SendStatus.FAILED) else ""
                outcomes.append(StepOutcome(label, state, detail, campaign_id))
                continue
            due_at = order.ordered_at + delay(step)
            if due_at > now:
                outcomes.append(StepOutcome(label, "due", f"{due_at:%Y-%m-%d %H:%M} UTC"))
            elif due_at >= now - ORDER_GRACE:
                outcomes.append(StepOutcome(label, "due", "within a minute"))
            else:
                outcomes.append(StepOutcome(label, "missed", "fell due while the automation was off or paused"))
        result.append(OrderRunRow(order, email, outcomes))
    return result
