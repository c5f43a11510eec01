"""Segment rules compiled to SQL: a validated definition (campaigns.contacts.segment_rules) becomes a SQLAlchemy
WHERE condition on Contact, on SQLite and PostgreSQL alike.

Every rule is a query over contact data in the models (profile, orders, events, interests, topics, survey answers),
so compilation needs nothing above the contacts: a survey-answer rule reads SurveyAnswer rows directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Numeric, String, and_, case, cast, exists, extract, func, or_, select, true

from campaigns.contacts.segment_rules import FIELDS
from campaigns.models import Contact, ContactInterest, Event, EventType, Order, Subscription, SurveyAnswer


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


def _compile_rule(rule: Mapping[str, Any], dialect: str, now: dt.datetime) -> ColumnElement[bool]:
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
        event = {"opened": EventType.OPEN, "clicked": EventType.CLICK, "replied": EventType.REPLY}[name]
        happened = exists().where(Event.contact_id == Contact.id, Event.type == event,
                                  Event.machine.is_(False),
                                  Event.occurred_at >= now - dt.timedelta(days=value))
        return happened if op == "in_last_days" else ~happened
    if kind == "survey":
        # Definitions number questions from 1 (as the builder shows them); stored answers from 0.
        return answered_condition(value["survey_id"], value["question"] - 1, value["answer"] or None)
    raise AssertionError(kind)


def _order_subquery(aggregate):
    return select(aggregate).where(Order.contact_id == Contact.id).correlate(Contact).scalar_subquery()


def _text(column, op: str, value: str | None) -> ColumnElement[bool]:
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


def _date(column, op: str, value: Any, now: dt.datetime) -> ColumnElement[bool]:
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


def _number(column, op: str, value: Decimal) -> ColumnElement[bool]:
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


def answered_condition(survey_id: int, question_index: int, answer: Any = None) -> ColumnElement[bool]:
    """A condition on Contact.id: the contact's current answer to question question_index (0-based) of the survey
    is answer (case-insensitive: 'no', 4, 'Roses'), or any answer when answer is None."""
    conds = [SurveyAnswer.survey_id == survey_id, SurveyAnswer.position == question_index]
    if answer is not None:
        text = "yes" if answer is True else "no" if answer is False else str(answer).strip()
        conds.append(func.lower(SurveyAnswer.value) == text.lower())
    return Contact.id.in_(select(SurveyAnswer.contact_id).where(*conds))
