"""Segments: saved, dynamic contact filters — evaluate (count, sample, campaign audience), save, delete, and the
builder's schema. The rules themselves (whitelist, validation, compilation) live in segment_rules.

Saved segments keep the definition, not the result, so they are evaluated afresh (with a fresh "now") at use.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, false, func, select, true
from sqlalchemy.orm import Session, object_session

from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import Campaign, CampaignStatus, Contact, ContactInterest, ContactStatus, Segment, Topic
from campaigns.services.segment_rules import (  # noqa: F401 - the public names of segments live here too
    FIELDS,
    MONTHS,
    OPERATORS,
    check_references,
    compile_definition,
    describe,
    iter_rules,
    parse_definition,
    surveys_available,
)

logger = logging.getLogger(__name__)


def dialect_of(session: Session) -> str:
    """The database dialect name of a session ("sqlite", "postgresql")."""
    return session.get_bind().dialect.name


def condition(session: Session, definition: Mapping[str, Any] | str | None,
              now: dt.datetime | None = None) -> ColumnElement[bool]:
    """Validate and compile a definition for this session's database."""
    return compile_definition(parse_definition(definition), dialect=dialect_of(session), now=now)


def campaign_condition(campaign: Campaign) -> ColumnElement[bool]:
    """The condition of a campaign's segment (everyone when it has none), evaluated now."""
    if campaign.segment_id is None:
        return true()
    session = object_session(campaign)
    if session is None:
        raise InvalidState("the campaign is not attached to a session")
    segment = session.get(Segment, campaign.segment_id)
    if segment is None:
        return false()
    return condition(session, segment.definition)


# ---------------------------------------------------------------- counting

def count(session: Session, definition: Mapping[str, Any] | str | None) -> int:
    """How many contacts match right now."""
    cond = condition(session, definition)
    return session.scalar(select(func.count()).select_from(Contact).where(cond)) or 0


def sample(session: Session, definition: Mapping[str, Any] | str | None, limit: int = 5) -> list[Contact]:
    """A few matching contacts (lowest ids first), to show the marketer what the filter catches."""
    cond = condition(session, definition)
    return list(session.scalars(select(Contact).where(cond).order_by(Contact.id).limit(limit)))


# ---------------------------------------------------------------- saved segments

def get_segment(session: Session, segment_id: int) -> Segment:
    """Load one segment or raise NotFound."""
    segment = session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found")
    return segment


def list_segments(session: Session) -> list[Segment]:
    """Every saved segment by name."""
    return list(session.scalars(select(Segment).order_by(Segment.name)))


def save_segment(session: Session, data: Mapping[str, Any], segment: Segment | None = None) -> Segment:
    """Create or update a segment from form-like data (name, description, definition JSON); nothing on error."""
    name = str(data.get("name", "") or "").replace("\x00", "").strip()
    if not name:
        raise ValidationError("give the segment a name", field="name")
    if len(name) > 200:
        raise ValidationError("the name is longer than 200 characters", field="name")
    clash = session.scalar(select(Segment.id).where(func.lower(Segment.name) == name.lower()))
    if clash is not None and (segment is None or clash != segment.id):
        raise ValidationError(f"there is already a segment called {name}", field="name")
    definition = parse_definition(data.get("definition"))
    if not definition["rules"]:
        raise ValidationError("add at least one rule", field="definition")
    check_references(session, definition)
    # Compile once so a definition that cannot be evaluated is refused now rather than at send time.
    count(session, definition)
    if segment is None:
        segment = Segment()
        session.add(segment)
    segment.name = name
    segment.description = str(data.get("description", "") or "").replace("\x00", "").strip()[:2000]
    segment.definition = definition
    session.flush()
    return segment


def delete_segment(session: Session, segment: Segment) -> None:
    """Delete a segment unless a campaign that has not finished still uses it."""
    users = list(session.scalars(select(Campaign.name).where(
        Campaign.segment_id == segment.id,
        Campaign.status.in_([CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING,
                             CampaignStatus.PAUSED]))))
    if users:
        raise InvalidState(f"the segment is the audience of {', '.join(users)}; change those campaigns first")
    session.delete(segment)
    session.flush()


def builder_schema(session: Session) -> dict[str, Any]:
    """What the builder offers: fields, operators, statuses, months, topics and known interests (for segments.js)."""
    interests = list(session.scalars(select(ContactInterest.interest).distinct()
                                     .order_by(ContactInterest.interest).limit(200)))
    survey = surveys_available()
    return {
        "surveys": _surveys(session) if survey else [],
        "fields": [{"name": n, "label": f.label, "kind": f.kind, "group": f.group}
                   for n, f in FIELDS.items() if survey or f.kind != "survey"],
        "operators": {k: [{"name": n, "label": lab, "value": vt} for n, (lab, vt) in ops.items()]
                      for k, ops in OPERATORS.items()},
        "statuses": [s.value for s in ContactStatus],
        "months": MONTHS,
        "topics": [{"id": t.id, "name": t.name} for t in session.scalars(select(Topic).order_by(Topic.name))],
        "interests": interests,
    }


def _surveys(session: Session) -> list[dict[str, Any]]:
    """Surveys and their questions for the survey-answer rule (empty when the surveys module has no model)."""
    try:
        from campaigns.models import Survey
    except ImportError:
        return []
    return [{"id": s.id, "name": s.name,
             "questions": [{"number": q.position + 1, "prompt": q.prompt, "choices": list(q.choices or [])}
                           for q in s.questions]}
            for s in session.scalars(select(Survey).order_by(Survey.name).limit(200))]
