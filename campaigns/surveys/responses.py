"""Answering a survey: the survey a sent message carried, the answers a page posts, and storing them (each change
is a contact event). Functions here flush; the view that opened the session commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.errors import NotFound
from campaigns.models import Campaign, Contact, Event, EventType, Send, Survey, SurveyAnswer, utcnow
from campaigns.surveys.service import normalize_answer


@dataclass
class SurveyResponse:
    """One recipient's survey: who, from which mail, and their current answers by question position."""

    survey: Survey
    send_id: int
    contact: Contact
    campaign_id: int | None
    answers: dict[int, str]


def open_response(session: Session, send_id: int) -> SurveyResponse:
    """The survey a sent message carried, for its recipient; NotFound when the message, contact or survey is gone."""
    row = session.execute(select(Send, Campaign).join(Campaign, Campaign.id == Send.campaign_id)
                          .where(Send.id == send_id)).first()
    if row is None:
        raise NotFound("this message is no longer on file")
    send, campaign = row
    survey = session.get(Survey, campaign.survey_id) if campaign.survey_id else None
    if survey is None or not survey.questions:
        raise NotFound("this survey has closed")
    contact = session.get(Contact, send.contact_id)
    if contact is None:
        raise NotFound("this message is no longer on file")
    answers = dict(session.execute(select(SurveyAnswer.position, SurveyAnswer.value).where(
        SurveyAnswer.send_id == send_id, SurveyAnswer.survey_id == survey.id)).all())
    return SurveyResponse(survey, send_id, contact, campaign.id, answers)


def parse_answers(survey: Survey, form: Mapping[str, Any]) -> dict[int, str]:
    """Answers from a posted page (field q<position>); unanswered questions are left out; raises ValidationError."""
    out: dict[int, str] = {}
    for q in survey.questions:
        raw = form.get(f"q{q.position}")
        if raw is None or not str(raw).strip():
            continue
        out[q.position] = normalize_answer(q, raw)
    return out


def record_answers(session: Session, response: SurveyResponse, answers: Mapping[int, str], source: str) -> int:
    """Store answers (already normalized), replacing earlier ones; each change is an event; returns changes."""
    by_pos = {q.position: q for q in response.survey.questions}
    changed = 0
    now = utcnow()
    for position, value in sorted(answers.items()):
        question = by_pos.get(position)
        if question is None or response.answers.get(position) == value:
            continue
        row = session.scalar(select(SurveyAnswer).where(SurveyAnswer.send_id == response.send_id,
                                                        SurveyAnswer.question_id == question.id))
        if row is None:
            try:
                with session.begin_nested():
                    session.add(SurveyAnswer(survey_id=response.survey.id, question_id=question.id,
                                             position=position, contact_id=response.contact.id,
                                             campaign_id=response.campaign_id, send_id=response.send_id,
                                             value=value, answered_at=now))
            except IntegrityError:   # the same person answered at the same moment (a double click)
                row = session.scalar(select(SurveyAnswer).where(SurveyAnswer.send_id == response.send_id,
                                                                SurveyAnswer.question_id == question.id))
        if row is not None:
            row.value, row.answered_at = value, now
        session.add(Event(contact_id=response.contact.id, campaign_id=response.campaign_id,
                          send_id=response.send_id, type=EventType.SURVEY_ANSWER, occurred_at=now,
                          data={"survey_id": response.survey.id, "question": position, "answer": value,
                                "source": source}))
        response.answers[position] = value
        changed += 1
    if changed:
        webhook_events.record(session, webhook_events.EventType.SURVEY_ANSWERED, {
            "contact": {"id": response.contact.id, "email": response.contact.email},
            "survey": {"id": response.survey.id, "name": response.survey.name},
            "campaign_id": response.campaign_id, "send_id": response.send_id, "source": source,
            "answers": [{"question": q.position, "prompt": q.prompt, "answer": response.answers.get(q.position)}
                        for q in sorted(response.survey.questions, key=lambda q: q.position)
                        if q.position in response.answers]})
    session.flush()
    return changed
