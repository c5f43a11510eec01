"""Surveys: 1-5 questions, the first answerable from the mail with one click, answers as contact events.

A survey link is a sealed token (Purpose.SURVEY: send id, question 0, answer code). Answer codes are 1-based
positions in the question's options (rating 1-5, yes/no, the choices); 0 opens the page without an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import escape
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from campaigns import recipient_urls
from campaigns.csvfiles import CsvChunks
from campaigns.db import parse_id
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import (
    Campaign,
    Contact,
    Event,
    EventType,
    QuestionKind,
    Send,
    Survey,
    SurveyAnswer,
    SurveyQuestion,
    utcnow,
)
from mailer.tracking import Purpose, TokenCodec

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


def answer_code(question: SurveyQuestion, raw: Any) -> int:
    """The code sealed into a one-click link for an answer (1-based option position)."""
    return options(question).index(normalize_answer(question, raw)) + 1


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
    session.commit()


# ---------------------------------------------------------------- in the mail

class SurveyBlock:
    """The first question with one link per answer: HTML in the HTML part, plain lines in the text part."""

    __slots__ = ("html", "text")

    def __init__(self, html: str, text: str) -> None:
        self.html = html
        self.text = text

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SurveyLinks:
    """What a campaign's messages need to carry its survey, built once per batch (see CampaignMailer)."""

    survey_id: int
    prompt: str
    kind: str
    options: tuple[str, ...]
    base_url: str
    tokens: TokenCodec

    @classmethod
    def for_campaign(cls, session: Session, campaign: Campaign, *, base_url: str,
                     tokens: TokenCodec) -> SurveyLinks | None:
        """None when the campaign carries no survey (or it has no questions)."""
        if not campaign.survey_id:
            return None
        survey = session.get(Survey, campaign.survey_id)
        if survey is None or not survey.questions:
            return None
        first = survey.questions[0]
        return cls(survey.id, first.prompt, str(first.kind), options(first), base_url, tokens)

    def url(self, send_id: int, answer: Any = None) -> str:
        """The link answering the first question with answer (or opening the page when answer is None)."""
        code = 0
        if answer is not None:
            text = "yes" if answer is True else "no" if answer is False else str(answer).strip().lower()
            lowered = [o.lower() for o in self.options]
            if text not in lowered:
                raise ValueError(f"survey_url({answer!r}): the first question accepts {', '.join(self.options)}"
                                 if self.options else "survey_url(): the first question takes free text; "
                                 "call survey_url() without an answer")
            code = lowered.index(text) + 1
        return recipient_urls.sealed(self.base_url, self.tokens, Purpose.SURVEY, send_id, 0, code)

    def block(self, send_id: int) -> SurveyBlock:
        """The first question and its one-click answers."""
        prompt = escape(self.prompt)
        if not self.options:
            link = self.url(send_id)
            return SurveyBlock(
                f'<p style="margin:0 0 8px;font-weight:600">{prompt}</p>'
                f'<p style="margin:0"><a href="{link}" style="color:#1d4ed8">Answer in one minute</a></p>',
                f"{self.prompt}\nAnswer here: {link}\n")
        labels = {"yes": "Yes", "no": "No"}
        cells = []
        lines = []
        for option in self.options:
            link = self.url(send_id, option)
            label = labels.get(option, option)
            cells.append(f'<a href="{link}" style="display:inline-block;margin:0 6px 6px 0;padding:8px 14px;'
                         f'border:1px solid #1d4ed8;border-radius:6px;color:#1d4ed8;text-decoration:none;'
                         f'font-weight:600">{escape(label)}</a>')
            lines.append(f"{label}: {link}")
        hint = ' <span style="color:#6b7280;font-weight:400">(1 = poor, 5 = great)</span>' \
            if self.kind == QuestionKind.RATING else ""
        return SurveyBlock(f'<p style="margin:0 0 8px;font-weight:600">{prompt}{hint}</p><p style="margin:0">'
                           + "".join(cells) + "</p>",
                           self.prompt + "\n" + "\n".join(lines) + "\n")

    def context(self, send_id: int) -> dict[str, Any]:
        """Template values: survey_url(answer=None), survey_block() and survey.question."""
        return {"survey_url": lambda answer=None: self.url(send_id, answer),
                "survey_block": lambda: self.block(send_id),
                "survey": {"question": self.prompt, "options": list(self.options)}}


# ---------------------------------------------------------------- answering

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
    session.commit()
    return changed


# ---------------------------------------------------------------- segments

def answered_condition(survey_id: int, question_index: int, answer: Any = None) -> ColumnElement[bool]:
    """A condition on Contact.id: the contact's current answer to question question_index (0-based) of the survey
    is answer (case-insensitive: 'no', 4, 'Roses'), or any answer when answer is None."""
    conds = [SurveyAnswer.survey_id == survey_id, SurveyAnswer.position == question_index]
    if answer is not None:
        text = "yes" if answer is True else "no" if answer is False else str(answer).strip()
        conds.append(func.lower(SurveyAnswer.value) == text.lower())
    return Contact.id.in_(select(SurveyAnswer.contact_id).where(*conds))


# ---------------------------------------------------------------- results

def results(session: Session, survey_id: int) -> dict[str, Any]:
    """Per question: counts per option (with share), answer count, average rating, latest free-text answers."""
    survey = get_survey(session, survey_id)
    counts: dict[int, dict[str, int]] = {}
    for position, value, n in session.execute(
            select(SurveyAnswer.position, SurveyAnswer.value, func.count())
            .where(SurveyAnswer.survey_id == survey_id).group_by(SurveyAnswer.position, SurveyAnswer.value)):
        counts.setdefault(position, {})[value] = n
    respondents = session.scalar(select(func.count(func.distinct(SurveyAnswer.send_id)))
                                 .where(SurveyAnswer.survey_id == survey_id)) or 0
    questions = []
    for q in survey.questions:
        got = counts.get(q.position, {})
        total = sum(got.values())
        item: dict[str, Any] = {"position": q.position, "prompt": q.prompt, "kind": str(q.kind), "answers": total}
        if q.kind == QuestionKind.TEXT:
            item["texts"] = [(v, at) for v, at in session.execute(
                select(SurveyAnswer.value, SurveyAnswer.answered_at)
                .where(SurveyAnswer.survey_id == survey_id, SurveyAnswer.position == q.position,
                       SurveyAnswer.value != "")
                .order_by(SurveyAnswer.answered_at.desc()).limit(50))]
        else:
            item["bars"] = [{"label": o, "count": got.get(o, 0),
                             "percent": round(100 * got.get(o, 0) / total) if total else 0}
                            for o in options(q)]
            if q.kind == QuestionKind.RATING and total:
                item["average"] = round(sum(int(v) * n for v, n in got.items() if v.isdigit()) / total, 2)
        questions.append(item)
    return {"survey_id": survey.id, "name": survey.name, "respondents": respondents, "questions": questions}


def export_csv(session: Session, survey_id: int) -> Iterator[str]:
    """All answers as CSV (one row per person and question), safe against spreadsheet formula injection."""
    survey = get_survey(session, survey_id)
    prompts = {q.position: q.prompt for q in survey.questions}
    out = CsvChunks()
    yield "\ufeff"
    out.writerow(["answered_at", "email", "first_name", "last_name", "campaign", "question_number",
                  "question", "answer"])
    after = 0
    while True:
        rows = session.execute(
            select(SurveyAnswer, Contact.email, Contact.first_name, Contact.last_name, Campaign.name)
            .join(Contact, Contact.id == SurveyAnswer.contact_id)
            .outerjoin(Campaign, Campaign.id == SurveyAnswer.campaign_id)
            .where(SurveyAnswer.survey_id == survey_id, SurveyAnswer.id > after)
            .order_by(SurveyAnswer.id).limit(1000)).all()
        if not rows:
            break
        for a, email, first, last, campaign in rows:
            out.writerow((a.answered_at, email, first, last, campaign or "", a.position + 1,
                          prompts.get(a.position, ""), a.value))
        yield out.take()
        after = rows[-1][0].id



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
