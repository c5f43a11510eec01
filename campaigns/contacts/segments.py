"""Segments: saved, dynamic contact filters — evaluate (count, sample, campaign audience), save, delete, and the
builder's schema. The rules themselves (whitelist, validation, compilation) live in segment_rules.

Saved segments keep the definition, not the result, so they are evaluated afresh (with a fresh "now") at use.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, func, literal, or_, select, text, true
from sqlalchemy.orm import Session, object_session

from campaigns.contacts.segment_rules import (  # noqa: F401 - the public names of segments live here too
    FIELDS,
    MONTHS,
    OPERATORS,
    check_references,
    describe,
    iter_rules,
    parse_definition,
)
from campaigns.contacts.segment_sql import compile_definition
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    ContactInterest,
    ContactStatus,
    LoyaltyTier,
    Segment,
    Survey,
    Topic,
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


SAMPLE_BLOCKS = 20        # an estimate counts this many runs of consecutive contact ids, spread over the list,
SAMPLE_RUN = 1000         # of this many ids each


@dataclass(frozen=True)
class Estimate:
    """A segment size: exact, or estimated from a sample of `sampled` contacts (rounded to 2 significant digits)."""

    count: int
    exact: bool
    sampled: int = 0


def estimate(session: Session, definition: Mapping[str, Any] | str | None, live_limit: int) -> Estimate:
    """The exact count on a list of up to live_limit contacts, else an estimate from evenly spread runs of ids."""
    cond = condition(session, definition)
    top = session.scalar(select(func.max(Contact.id))) or 0
    if top <= max(live_limit, 2 * SAMPLE_BLOCKS * SAMPLE_RUN):
        return Estimate(session.scalar(select(func.count()).select_from(Contact).where(cond)) or 0, True)
    if session.get_bind().dialect.name == "postgresql":
        # The planner's cost for the whole list would start JIT compilation, which alone costs more than the sample.
        session.execute(text("SET LOCAL jit = off"))
    step = top // SAMPLE_BLOCKS
    runs = or_(*(Contact.id.between(k * step + 1, k * step + SAMPLE_RUN) for k in range(SAMPLE_BLOCKS)))
    matched, seen = session.execute(select(func.count().filter(cond), func.count()).where(runs)).one()
    if not seen:
        return Estimate(0, False, 0)
    # Ids are dense enough that the sampled runs stand for top / (runs × run length) of the list each.
    raw = matched * top / (SAMPLE_BLOCKS * SAMPLE_RUN)
    return Estimate(_two_digits(raw), False, seen)


def _two_digits(x: float) -> int:
    """Round to two significant digits (an estimate should not look more precise than it is)."""
    if x < 100:
        return round(x)
    scale = 10 ** (len(str(int(x))) - 2)
    return round(x / scale) * scale


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


def known_interests(session: Session, limit: int = 200) -> list[str]:
    """The first `limit` distinct interests in order, jumping from one to the next in the interest index: one index
    probe per interest instead of a DISTINCT over every contact's interests."""
    interest = ContactInterest.__table__.c.interest
    seed = select(select(func.min(interest)).scalar_subquery().label("interest"), literal(1).label("n"))
    walk = seed.cte("known_interest", recursive=True)
    step = select(select(func.min(interest)).where(interest > walk.c.interest).scalar_subquery(), walk.c.n + 1) \
        .where(walk.c.interest.is_not(None), walk.c.n < limit)
    walk = walk.union_all(step)
    return list(session.scalars(select(walk.c.interest).where(walk.c.interest.is_not(None))
                                .order_by(walk.c.interest)))


def builder_schema(session: Session) -> dict[str, Any]:
    """What the builder offers: fields, operators, statuses, months, topics and known interests (for segments.js)."""
    interests = known_interests(session)
    return {
        "surveys": _surveys(session),
        "fields": [{"name": n, "label": f.label, "kind": f.kind, "group": f.group} for n, f in FIELDS.items()],
        "operators": {k: [{"name": n, "label": lab, "value": vt} for n, (lab, vt) in ops.items()]
                      for k, ops in OPERATORS.items()},
        "statuses": [s.value for s in ContactStatus],
        "months": MONTHS,
        "topics": [{"id": t.id, "name": t.name} for t in session.scalars(select(Topic).order_by(Topic.name))],
        "interests": interests,
        "tiers": list(session.scalars(select(LoyaltyTier.name).order_by(LoyaltyTier.rank.desc()))),
    }


def _surveys(session: Session) -> list[dict[str, Any]]:
    """Surveys and their questions for the survey-answer rule (the first 200 by name)."""
    return [{"id": s.id, "name": s.name,
             "questions": [{"number": q.position + 1, "prompt": q.prompt, "choices": list(q.choices or [])}
                           for q in s.questions]}
            for s in session.scalars(select(Survey).order_by(Survey.name).limit(200))]
