"""Segment rules: the whitelist of fields and conditions, validation of a JSON definition, and compilation to a
SQLAlchemy condition on Contact.

A definition is a group: ``{"match": "all" | "any", "rules": [rule or group, ...]}``; a rule is
``{"field": "city", "op": "is", "value": "Berlin"}`` (attribute rules also carry ``"key"``). Users never write SQL:
field and operator names are looked up in FIELDS, values are parsed into Python values and bound as parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Numeric, String, and_, case, cast, exists, extract, func, or_, select, true
from sqlalchemy.orm import Session

from campaigns.errors import ValidationError
from campaigns.models import Contact, ContactInterest, ContactStatus, Event, EventType, Order, Subscription, Topic

logger = logging.getLogger(__name__)

MAX_DEPTH = 3          # top group plus two levels of nested groups
MAX_RULES = 60
MAX_TEXT = 200
MAX_DAYS = 36500
_KEY_RE = re.compile(r"^[\w .\-]{1,100}$")


@dataclass(frozen=True)
class Field:
    """One thing a rule can test: its label, kind (which operators and values apply) and group in the picker."""

    label: str
    kind: str
    group: str


FIELDS: dict[str, Field] = {
    "email": Field("Email", "text", "Profile"),
    "first_name": Field("First name", "text", "Profile"),
    "last_name": Field("Last name", "text", "Profile"),
    "phone": Field("Phone", "text", "Profile"),
    "city": Field("City", "text", "Profile"),
    "region": Field("Region", "text", "Profile"),
    "postal_code": Field("Postal code", "text", "Profile"),
    "country": Field("Country (2-letter code)", "text", "Profile"),
    "locale": Field("Language", "text", "Profile"),
    "timezone": Field("Time zone", "text", "Profile"),
    "consent_source": Field("Consent source", "text", "Profile"),
    "status": Field("Status", "status", "Profile"),
    "birthday_month": Field("Birthday month", "month", "Profile"),
    "created_at": Field("Added", "date", "Profile"),
    "attribute": Field("Custom attribute", "attribute", "Profile"),
    "interest": Field("Interest", "interest", "Interests and topics"),
    "topic": Field("Topic", "topic", "Interests and topics"),
    "lifetime_value": Field("Lifetime value", "number", "Orders"),
    "order_count": Field("Number of orders", "number", "Orders"),
    "last_order_at": Field("Last order", "date", "Orders"),
    "opened": Field("Opened a mail (people, not machines)", "activity", "Engagement"),
    "clicked": Field("Clicked a link (people, not machines)", "activity", "Engagement"),
    "last_sent_at": Field("Last mailed", "date", "Engagement"),
    "engagement_score": Field("Engagement score", "number", "Engagement"),
    "survey": Field("Survey answer", "survey", "Surveys"),
}

# Operators per kind: name -> (label, value type). Value types: text, none, date, days, number, month, status,
# topic, survey.
OPERATORS: dict[str, dict[str, tuple[str, str]]] = {
    "text": {"is": ("is", "text"), "is_not": ("is not", "text"), "contains": ("contains", "text"),
             "not_contains": ("does not contain", "text"), "starts_with": ("starts with", "text"),
             "ends_with": ("ends with", "text"), "is_empty": ("is empty", "none"),
             "is_not_empty": ("is not empty", "none")},
    "status": {"is": ("is", "status"), "is_not": ("is not", "status")},
    "month": {"is": ("is", "month"), "is_not": ("is not", "month"), "this_month": ("is this month", "none"),
              "next_month": ("is next month", "none")},
    "date": {"in_last_days": ("in the last … days", "days"), "not_in_last_days": ("not in the last … days", "days"),
             "before": ("before", "date"), "after": ("on or after", "date"), "is_empty": ("never", "none"),
             "is_not_empty": ("ever", "none")},
    "number": {"gte": ("at least", "number"), "lte": ("at most", "number"), "gt": ("more than", "number"),
               "lt": ("less than", "number"), "eq": ("exactly", "number")},
    "attribute": {"is": ("is", "text"), "is_not": ("is not", "text"), "contains": ("contains", "text"),
                  "gte": ("is a number at least", "number"), "lte": ("is a number at most", "number"),
                  "exists": ("is set", "none"), "not_exists": ("is not set", "none")},
    "interest": {"has": ("has", "text"), "has_not": ("does not have", "text")},
    "topic": {"subscribed": ("subscribed to", "topic"), "not_subscribed": ("not subscribed to", "topic")},
    "activity": {"in_last_days": ("in the last … days", "days"),
                 "not_in_last_days": ("not in the last … days", "days")},
    "survey": {"answered": ("answered", "survey")},
}

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


# ---------------------------------------------------------------- survey answers (extension point)

def _survey_hook() -> Callable[..., ColumnElement[bool]] | None:
    """campaigns.surveys.service.answered_condition(survey_id, question_index, answer), when that module has it."""
    try:
        from campaigns.surveys import service as surveys
    except ImportError:
        return None
    return getattr(surveys, "answered_condition", None)


def surveys_available() -> bool:
    """Whether survey-answer rules can be used (the surveys service is installed)."""
    return _survey_hook() is not None


# ---------------------------------------------------------------- validation

def parse_definition(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a definition (JSON text or dict) and return it normalized; raises ValidationError saying where."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {"match": "all", "rules": []}
    if isinstance(raw, str):
        if len(raw) > 100_000:
            raise ValidationError("the segment definition is too long", field="definition")
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValidationError("the segment definition is not valid JSON", field="definition") from None
    counter = [0]
    return _group(raw, "", 1, counter)


def _group(raw: Any, where: str, depth: int, counter: list[int]) -> dict[str, Any]:
    label = f"group {where}" if where else "the segment"
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{label} must be an object with match and rules", field="definition")
    match = raw.get("match", "all")
    if match not in ("all", "any"):
        raise ValidationError(f"{label}: match must be \"all\" or \"any\"", field="definition")
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        raise ValidationError(f"{label}: rules must be a list", field="definition")
    out = []
    for i, item in enumerate(rules, 1):
        here = f"{where}.{i}" if where else str(i)
        if isinstance(item, Mapping) and "rules" in item:
            if depth >= MAX_DEPTH:
                raise ValidationError(f"group {here}: groups can be nested {MAX_DEPTH - 1} levels deep at most",
                                      field="definition")
            out.append(_group(item, here, depth + 1, counter))
        else:
            counter[0] += 1
            if counter[0] > MAX_RULES:
                raise ValidationError(f"a segment can have {MAX_RULES} rules at most", field="definition")
            out.append(_rule(item, here))
    return {"match": match, "rules": out}


def _rule(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"rule {where} must be an object with field, op and value", field="definition")
    name = raw.get("field")
    field = FIELDS.get(name) if isinstance(name, str) else None
    if field is None:
        raise ValidationError(f"rule {where}: choose a field", field="definition")
    label = f"rule {where} ({field.label})"
    op = raw.get("op")
    spec = OPERATORS[field.kind].get(op) if isinstance(op, str) else None
    if spec is None:
        raise ValidationError(f"{label}: choose a condition", field="definition")
    rule: dict[str, Any] = {"field": name, "op": op}
    if field.kind == "attribute":
        key = str(raw.get("key", "") or "").strip()
        if not key:
            raise ValidationError(f"{label}: name the attribute", field="definition")
        if not _KEY_RE.match(key):
            raise ValidationError(f"{label}: an attribute name has letters, digits, spaces, _ . or - "
                                  f"(100 at most), not {key[:40]!r}", field="definition")
        rule["key"] = key
    if field.kind == "survey" and not surveys_available():
        raise ValidationError(f"{label}: survey answers are not available in this installation",
                              field="definition")
    value = _value(raw.get("value"), spec[1], label)
    if value is not None:
        rule["value"] = value
    return rule


def _value(raw: Any, kind: str, label: str) -> Any:  # noqa: C901 - one branch per value type, kept together
    if kind == "none":
        return None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValidationError(f"{label}: enter a value", field="definition")
    if kind == "text":
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise ValidationError(f"{label}: the value must be text", field="definition")
        text = str(raw).replace("\x00", "").strip()   # PostgreSQL text cannot hold NUL; nothing stored has one
        if len(text) > MAX_TEXT:
            raise ValidationError(f"{label}: the value is longer than {MAX_TEXT} characters", field="definition")
        return text
    if kind == "status":
        if raw not in ContactStatus.__members__.values():
            raise ValidationError(f"{label}: unknown status {str(raw)[:40]!r}", field="definition")
        return str(raw)
    if kind == "month":
        month = _int(raw, label, "a month from 1 to 12")
        if not 1 <= month <= 12:
            raise ValidationError(f"{label}: the month must be from 1 to 12", field="definition")
        return month
    if kind == "days":
        days = _int(raw, label, "a number of days")
        if not 1 <= days <= MAX_DAYS:
            raise ValidationError(f"{label}: the number of days must be from 1 to {MAX_DAYS}", field="definition")
        return days
    if kind == "date":
        try:
            return dt.date.fromisoformat(str(raw).strip()).isoformat()
        except ValueError:
            raise ValidationError(f"{label}: {str(raw)[:40]!r} is not a date like 2026-03-31",
                                  field="definition") from None
    if kind == "number":
        try:
            number = Decimal(str(raw).strip().replace(",", "."))
        except InvalidOperation:
            raise ValidationError(f"{label}: {str(raw)[:40]!r} is not a number", field="definition") from None
        if not number.is_finite() or abs(number) >= Decimal("1e12"):
            raise ValidationError(f"{label}: {str(raw)[:40]!r} is not a usable number", field="definition")
        return str(number)
    if kind == "topic":
        return _int(raw, label, "a topic")
    if kind == "survey":
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{label}: choose a survey, a question and an answer", field="definition")
        answer = str(raw.get("answer", "") or "").replace("\x00", "").strip()   # empty: any answer
        if len(answer) > MAX_TEXT:
            raise ValidationError(f"{label}: the answer is longer than {MAX_TEXT} characters", field="definition")
        question = _int(raw.get("question"), label, "a question number")
        if question < 1:
            raise ValidationError(f"{label}: questions are numbered from 1", field="definition")
        return {"survey_id": _int(raw.get("survey_id"), label, "a survey"), "question": question, "answer": answer}
    raise AssertionError(kind)


def _int(raw: Any, label: str, what: str) -> int:
    if isinstance(raw, bool):
        raise ValidationError(f"{label}: expected {what}", field="definition")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValidationError(f"{label}: expected {what}, got {str(raw)[:40]!r}", field="definition") from None
    if abs(value) > 2**31:
        raise ValidationError(f"{label}: {value} is out of range", field="definition")
    return value


def check_references(session: Session, definition: Mapping[str, Any]) -> None:
    """Refuse topic rules that name topics that do not exist (checked when saving, not at every evaluation)."""
    ids = {r["value"] for r in iter_rules(definition) if r["field"] == "topic"}
    if ids:
        known = set(session.scalars(select(Topic.id).where(Topic.id.in_(ids))))
        if ids - known:
            raise ValidationError("a topic rule names a topic that no longer exists", field="definition")


def iter_rules(definition: Mapping[str, Any]):  # noqa: ANN201
    """Every rule of a (normalized) definition, depth first."""
    for item in definition.get("rules", []):
        if "rules" in item:
            yield from iter_rules(item)
        else:
            yield item


# ---------------------------------------------------------------- compilation

def compile_definition(definition: Mapping[str, Any], *, dialect: str = "sqlite",
                       now: dt.datetime | None = None) -> ColumnElement[bool]:
    """A WHERE condition on Contact for a normalized definition; relative dates count back from `now`."""
    now = now or dt.datetime.now(dt.UTC)
    return _compile_group(definition, dialect, now)


def _compile_group(group: Mapping[str, Any], dialect: str, now: dt.datetime) -> ColumnElement[bool]:
    parts = [_compile_group(item, dialect, now) if "rules" in item else _compile_rule(item, dialect, now)
             for item in group.get("rules", [])]
    if not parts:
        return true()   # an empty group matches everyone (the builder starts empty)
    return and_(*parts) if group.get("match", "all") == "all" else or_(*parts)


def _compile_rule(rule: Mapping[str, Any], dialect: str, now: dt.datetime) -> ColumnElement[bool]:  # noqa: C901
    name, op, value = rule["field"], rule["op"], rule.get("value")
    kind = FIELDS[name].kind
    if kind == "text":
        return _text(func.lower(getattr(Contact, name)), op, value)
    if kind == "status":
        return Contact.status == value if op == "is" else Contact.status != value
    if kind == "month":
        month = extract("month", Contact.birthday)
        if op in ("this_month", "next_month"):
            value = now.month if op == "this_month" else now.month % 12 + 1
            return month == value
        return month == value if op == "is" else or_(Contact.birthday.is_(None), month != value)
    if kind == "date":
        column = _order_subquery(func.max(Order.ordered_at)) if name == "last_order_at" else getattr(Contact, name)
        return _date(column, op, value, now)
    if kind == "number":
        if name == "lifetime_value":
            column = func.coalesce(_order_subquery(func.sum(Order.amount)), 0)
        elif name == "order_count":
            column = _order_subquery(func.count(Order.id))
        else:
            column = getattr(Contact, name)
        return _number(column, op, Decimal(value))
    if kind == "attribute":
        return _attribute(rule["key"], op, value, dialect)
    if kind == "interest":
        has = exists().where(ContactInterest.contact_id == Contact.id,
                             ContactInterest.interest == str(value).lower())
        return has if op == "has" else ~has
    if kind == "topic":
        sub = exists().where(Subscription.contact_id == Contact.id, Subscription.topic_id == value,
                             Subscription.subscribed.is_(True))
        return sub if op == "subscribed" else ~sub
    if kind == "activity":
        event = EventType.OPEN if name == "opened" else EventType.CLICK
        happened = exists().where(Event.contact_id == Contact.id, Event.type == event,
                                  Event.machine.is_(False),
                                  Event.occurred_at >= now - dt.timedelta(days=value))
        return happened if op == "in_last_days" else ~happened
    if kind == "survey":
        hook = _survey_hook()
        if hook is None:
            raise ValidationError("survey answers are not available in this installation", field="definition")
        # Definitions number questions from 1 (as the builder shows them); the surveys service from 0.
        return hook(value["survey_id"], value["question"] - 1, value["answer"] or None)
    raise AssertionError(kind)


def _order_subquery(aggregate):  # noqa: ANN001, ANN202
    return select(aggregate).where(Order.contact_id == Contact.id).correlate(Contact).scalar_subquery()


def _text(column, op: str, value: str | None) -> ColumnElement[bool]:  # noqa: ANN001
    v = (value or "").lower()
    return {
        "is": lambda: column == v,
        "is_not": lambda: column != v,
        "contains": lambda: column.contains(v, autoescape=True),
        "not_contains": lambda: ~column.contains(v, autoescape=True),
        "starts_with": lambda: column.startswith(v, autoescape=True),
        "ends_with": lambda: column.endswith(v, autoescape=True),
        "is_empty": lambda: func.coalesce(column, "") == "",
        "is_not_empty": lambda: func.coalesce(column, "") != "",
    }[op]()


def _date(column, op: str, value: Any, now: dt.datetime) -> ColumnElement[bool]:  # noqa: ANN001
    if op == "in_last_days":
        return column >= now - dt.timedelta(days=value)
    if op == "not_in_last_days":
        return or_(column.is_(None), column < now - dt.timedelta(days=value))
    if op == "is_empty":
        return column.is_(None)
    if op == "is_not_empty":
        return column.is_not(None)
    day = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    return column < day if op == "before" else column >= day


def _number(column, op: str, value: Decimal) -> ColumnElement[bool]:  # noqa: ANN001
    return {"gte": column >= value, "lte": column <= value, "gt": column > value, "lt": column < value,
            "eq": column == value}[op]


def _attribute(key: str, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    element = Contact.attributes[key]
    text = cast(element.as_string(), String)   # numbers and strings alike as text, on both databases
    if op == "exists":
        return and_(element.as_string().is_not(None), text != "")
    if op == "not_exists":
        return or_(element.as_string().is_(None), text == "")
    if op in ("gte", "lte"):
        # Only values that look like numbers compare; others never match (and never make the query fail).
        if dialect == "postgresql":
            numeric = text.regexp_match(r"^\s*-?[0-9]+(\.[0-9]+)?\s*$")
        else:
            trimmed = func.trim(text)
            numeric = and_(trimmed != "", trimmed != "-", ~trimmed.op("GLOB")("*[^0-9.-]*"),
                           ~trimmed.op("GLOB")("?*-*"), ~trimmed.op("GLOB")("*.*.*"))
        number = case((numeric, cast(func.trim(text), Numeric(24, 6))), else_=None)
        return _number(number, op, Decimal(value))
    lowered = func.lower(text)
    v = str(value).lower()
    if op == "is":
        return lowered == v
    if op == "is_not":
        return or_(element.as_string().is_(None), lowered != v)
    return lowered.contains(v, autoescape=True)


def describe(definition: Mapping[str, Any], topic_names: Mapping[int, str] | None = None) -> str:
    """A one-line, human-readable summary such as: city is "berlin" and (opened in the last 30 days or …)."""
    topic_names = topic_names or {}

    def group(g: Mapping[str, Any], top: bool) -> str:
        parts = [group(i, False) if "rules" in i else rule(i) for i in g.get("rules", [])]
        if not parts:
            return "everyone"
        joined = (" and " if g.get("match", "all") == "all" else " or ").join(parts)
        return joined if top or len(parts) == 1 else f"({joined})"

    def rule(r: Mapping[str, Any]) -> str:
        field = FIELDS[r["field"]]
        label, vtype = OPERATORS[field.kind][r["op"]]
        subject = f"attribute {r['key']}" if field.kind == "attribute" else field.label.lower()
        value = r.get("value")
        if vtype == "none":
            return f"{subject} {label}"
        if vtype == "days":
            return f"{subject} {label.replace('…', str(value))}"
        if vtype == "month":
            return f"{subject} {label} {MONTHS[value - 1]}"
        if vtype == "topic":
            return f"{label} {topic_names.get(value, f'topic #{value}')}"
        if vtype == "survey":
            answer = repr(value["answer"]) if value["answer"] else "anything"
            return f"answered {answer} to question {value['question']} of survey #{value['survey_id']}"
        return f"{subject} {label} {json.dumps(value, ensure_ascii=False) if vtype == 'text' else value}"

    return group(definition, True)
