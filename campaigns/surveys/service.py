"""Surveys: 1-5 questions, the first answerable from the mail with one click, answers as contact events.

This module owns a survey's questions and their answers' forms, editing, the segment condition on answers and the
campaign form's choice of a survey; the links in the mail are campaigns.surveys.links, answering
campaigns.surveys.responses, results campaigns.surveys.results.

A survey link is a sealed token (Purpose.SURVEY: send id, question 0, answer code). Answer codes are 1-based
positions in the question's options (rating 1-5, yes/no, the choices); 0 opens the page without an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.db import parse_id
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import (
    Campaign,
    QuestionKind,
    Survey,
    SurveyAnswer,
    SurveyQuestion,
)

logger = logging.getLogger(__name__)

MAX_QUESTIONS = 5
MAX_CHOICES = 10
MAX_TEXT = 500
KIND_LABELS = {QuestionKind.RATING: "Rating 1–5", QuestionKind.YES_NO: "Yes / no",
               QuestionKind.CHOICE: "One of several choices", QuestionKind.TEXT: "Short free text"}
YES_NO = ("yes", "no")
RATINGS = ("1", "2", "3", "4", "5")


# ---------------------------------------------------------------- questions and answers

def options(question: SurveyQuestion) -> tuple[str, ...]:
    """The answers a question accepts, in order (empty for free text)."""
    if question.kind == QuestionKind.RATING:
        return RATINGS
    if question.kind == QuestionKind.YES_NO:
        return YES_NO
    if question.kind == QuestionKind.CHOICE:
        return tuple(str(c) for c in question.choices or ())
    return ()


def normalize_answer(question: SurveyQuestion, raw: Any) -> str:
    """The stored form of an answer ("4", "yes", a choice as written, the text); raises ValidationError."""
    if question.kind == QuestionKind.YES_NO and isinstance(raw, bool):
        return "yes" if raw else "no"
    text = str(raw if raw is not None else "").strip()
    if question.kind == QuestionKind.TEXT:
        if len(text) > MAX_TEXT:
            raise ValidationError(f"the answer to “{question.prompt}” is limited to {MAX_TEXT} characters",
                                  field=f"q{question.position}")
        return text
    allowed = options(question)
    for option in allowed:
        if text.lower() == option.lower():
            return option
    raise ValidationError(f"choose one of {', '.join(allowed)} for “{question.prompt}”", field=f"q{question.position}")


def answer_of_code(question: SurveyQuestion, code: int) -> str | None:
    """The answer a one-click link stands for; None when the code is 0 or does not fit the question."""
    opts = options(question)
    return opts[code - 1] if 0 < code <= len(opts) else None


# ---------------------------------------------------------------- editing

def get_survey(session: Session, survey_id: int) -> Survey:
    """Load one survey or raise NotFound."""
    survey = session.get(Survey, survey_id)
    if survey is None:
        raise NotFound(f"survey {survey_id} not found")
    return survey


def list_surveys(session: Session) -> list[tuple[Survey, int]]:
    """Surveys, newest first, with how many people answered each."""
    counts = dict(session.execute(select(SurveyAnswer.survey_id, func.count(func.distinct(SurveyAnswer.send_id)))
                                  .group_by(SurveyAnswer.survey_id)).all())
    return [(s, counts.get(s.id, 0)) for s in session.scalars(select(Survey).order_by(Survey.id.desc()))]


def answer_count(session: Session, survey_id: int) -> int:
    """How many answers (all questions) a survey has."""
    return session.scalar(select(func.count()).select_from(SurveyAnswer)
                          .where(SurveyAnswer.survey_id == survey_id)) or 0


def questions_from_form(form: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Question dicts from q<i>_prompt / q<i>_kind / q<i>_choices fields (rows without a prompt are left out)."""
    indexes = sorted({int(k[1:].split("_", 1)[0]) for k in form
                      if k.startswith("q") and k.endswith("_prompt") and k[1:].split("_", 1)[0].isdigit()
                      and len(k) < 20})
    out = []
    for i in indexes:
        prompt = str(form.get(f"q{i}_prompt", "") or "").strip()
        if not prompt:
            continue
        out.append({"prompt": prompt, "kind": str(form.get(f"q{i}_kind", "") or ""),
                    "choices": [c.strip() for c in str(form.get(f"q{i}_choices", "") or "").splitlines()
                                if c.strip()]})
    return out


def _check_questions(questions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not questions:
        raise ValidationError("a survey needs at least one question", field="questions")
    if len(questions) > MAX_QUESTIONS:
        raise ValidationError(f"a survey has at most {MAX_QUESTIONS} questions, so people finish it; this one has "
                              f"{len(questions)}. Remove {len(questions) - MAX_QUESTIONS}.", field="questions")
    checked = []
    for n, q in enumerate(questions, start=1):
        prompt = str(q.get("prompt", "") or "").strip()
        kind = str(q.get("kind", "") or "")
        if not prompt:
            raise ValidationError(f"question {n} has no text", field=f"q{n - 1}_prompt")
        if len(prompt) > 500:
            raise ValidationError(f"question {n} is longer than 500 characters", field=f"q{n - 1}_prompt")
        if kind not in QuestionKind.__members__.values():
            raise ValidationError(f"question {n}: choose a kind of answer", field=f"q{n - 1}_kind")
        choices: list[str] = []
        if kind == QuestionKind.CHOICE:
            choices = [str(c).strip() for c in q.get("choices") or () if str(c).strip()]
            if not 2 <= len(choices) <= MAX_CHOICES:
                raise ValidationError(f"question {n}: give 2 to {MAX_CHOICES} choices, one per line",
                                      field=f"q{n - 1}_choices")
            if len({c.lower() for c in choices}) != len(choices):
                raise ValidationError(f"question {n}: each choice must be different", field=f"q{n - 1}_choices")
            if any(len(c) > 100 for c in choices):
                raise ValidationError(f"question {n}: a choice is at most 100 characters", field=f"q{n - 1}_choices")
        checked.append({"prompt": prompt, "kind": QuestionKind(kind), "choices": choices})
    return checked


def save_survey(session: Session, data: Mapping[str, Any], questions: Sequence[Mapping[str, Any]],
                survey: Survey | None = None) -> Survey:
    """Create or update a survey; questions are fixed once anyone has answered (the results would mix)."""
    name = str(data.get("name", "") or "").strip()
    if not name:
        raise ValidationError("give the survey a name", field="name")
    if len(name) > 200:
        raise ValidationError("the name is limited to 200 characters", field="name")
    checked = _check_questions(questions)
    clash = session.scalar(select(Survey.id).where(func.lower(Survey.name) == name.lower()))
    if clash is not None and (survey is None or clash != survey.id):
        raise ValidationError(f"there is already a survey called {name}", field="name")
    if survey is not None:
        current = [{"prompt": q.prompt, "kind": q.kind, "choices": list(q.choices or [])} for q in survey.questions]
        if current != checked and answer_count(session, survey.id):
            raise InvalidState("this survey already has answers, so its questions can no longer change "
                               "(the results would mix); create a new survey instead")
    else:
        survey = Survey()
        session.add(survey)
    survey.name = name
    survey.intro = str(data.get("intro", "") or "").strip()[:2000]
    survey.thanks = str(data.get("thanks", "") or "").strip()[:2000]
    current = [{"prompt": q.prompt, "kind": q.kind, "choices": list(q.choices or [])} for q in survey.questions]
    if current != checked:
        survey.questions.clear()
        session.flush()   # delete the old rows before positions are reused
        survey.questions.extend(SurveyQuestion(position=i, prompt=q["prompt"], kind=q["kind"], choices=q["choices"])
                                for i, q in enumerate(checked))
    session.flush()
    return survey


def delete_survey(session: Session, survey_id: int) -> None:
    """Delete a survey and its answers (campaigns that carried it keep being readable)."""
    survey = get_survey(session, survey_id)
    session.delete(survey)
    session.flush()



# ---------------------------------------------------------------- campaign form

def chosen_survey(session: Session, data: Mapping[str, Any], campaign: Campaign | None, content: str) -> int | None:
    """The survey a campaign form chose ("" = none; absent = keep); content with survey links needs one."""
    if "survey_id" in data:
        raw = str(data.get("survey_id") or "").strip()
        survey_id = None
        if raw:
            if (survey_id := parse_id(raw)) is None or session.get(Survey, survey_id) is None:
                raise ValidationError("the chosen survey does not exist (any more)", field="survey_id")
    else:
        survey_id = campaign.survey_id if campaign is not None else None
    if survey_id is None and ("survey_url" in content or "survey_block" in content):
        raise ValidationError("the content has survey links but no survey is chosen: choose the survey",
                              field="survey_id")
    return survey_id
