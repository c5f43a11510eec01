"""Survey results: counts per option with shares, averages, the latest free-text answers, and the CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.csvfiles import CsvChunks
from campaigns.models import Campaign, Contact, QuestionKind, SurveyAnswer
from campaigns.surveys.service import get_survey, options


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
