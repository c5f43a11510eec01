"""Segment rules: the whitelist of fields and conditions, validation of a JSON definition, and its description in
words. Compilation to SQL is campaigns.contacts.segment_sql.

A definition is a group: ``{"match": "all" | "any", "rules": [rule or group, ...]}``; a rule is
``{"field": "city", "op": "is", "value": "Berlin"}`` (attribute rules also carry ``"key"``). Users never write SQL:
field and operator names are looked up in FIELDS, values are parsed into Python values and bound as parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.errors import ValidationError
from campaigns.models import ContactStatus, Topic

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
    "tier": Field("Loyalty tier", "text", "Orders"),
    "opened": Field("Opened a mail (people, not machines)", "activity", "Engagement"),
    "clicked": Field("Clicked a link (people, not machines)", "activity", "Engagement"),
    "replied": Field("Replied to a mail (people, not auto-replies)", "activity", "Engagement"),
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
    value = _value(raw.get("value"), spec[1], label)
    if value is not None:
        rule["value"] = value
    return rule


def _value(raw: Any, kind: str, label: str) -> Any:
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


def iter_rules(definition: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every rule of a (normalized) definition, depth first."""
    for item in definition.get("rules", []):
        if "rules" in item:
            yield from iter_rules(item)
        else:
            yield item


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
