"""Surveys: write one (1-5 questions), see its results per question, export the answers as CSV."""

from __future__ import annotations

import logging

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import select

from campaigns.errors import RapportError
from campaigns.models import Campaign, Survey
from campaigns.surveys import results as results_service
from campaigns.surveys import service as survey_service
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.admin.helpers import streamed_csv
from campaigns.web.context import db
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)


@bp.get("/surveys")
@login_required
def surveys():
    return render_template("admin/surveys/index.html", rows=survey_service.list_surveys(db()))


@bp.route("/surveys/new", methods=["GET", "POST"])
@bp.route("/surveys/<int:survey_id>/edit", methods=["GET", "POST"])
@editor_required
def survey_edit(survey_id: int | None = None):
    session = db()
    survey = get_or_404(db(), Survey, survey_id) if survey_id else None
    if request.method == "POST":
        questions = survey_service.questions_from_form(request.form)
        try:
            saved = survey_service.save_survey(session, request.form, questions, survey)
            session.commit()
            flash("Survey saved.", "info")
            return redirect(url_for("admin.survey_results", survey_id=saved.id))
        except RapportError as exc:
            session.rollback()
            flash(str(exc), "error")
            survey = get_or_404(db(), Survey, survey_id) if survey_id else None
            return render_template("admin/surveys/edit.html", survey=survey, form=request.form,
                                   questions=_rows(questions), kinds=survey_service.KIND_LABELS,
                                   answered=survey_service.answer_count(session, survey_id) if survey_id else 0), 400
    rows = [{"prompt": q.prompt, "kind": q.kind, "choices": list(q.choices or [])} for q in survey.questions] \
        if survey else [{"prompt": "How happy are you with your last order?", "kind": "rating", "choices": []}]
    return render_template("admin/surveys/edit.html", survey=survey, form=None, questions=_rows(rows),
                           kinds=survey_service.KIND_LABELS,
                           answered=survey_service.answer_count(session, survey_id) if survey_id else 0)


def _rows(questions: list) -> list[dict]:
    """The question rows of the form: the given ones, padded with empty rows up to five."""
    rows = [dict(q) for q in questions]
    while len(rows) < survey_service.MAX_QUESTIONS:
        rows.append({"prompt": "", "kind": "rating", "choices": []})
    return rows


@bp.get("/surveys/<int:survey_id>")
@login_required
def survey_results(survey_id: int):
    get_or_404(db(), Survey, survey_id)
    used_by = list(db().scalars(select(Campaign).where(Campaign.survey_id == survey_id).order_by(Campaign.id)))
    return render_template("admin/surveys/results.html", results=results_service.results(db(), survey_id),
                           used_by=used_by)


@bp.get("/surveys/<int:survey_id>/answers.csv")
@login_required
def survey_export(survey_id: int) -> Response:
    survey = get_or_404(db(), Survey, survey_id)
    audit(Action.SURVEY_ANSWERS_EXPORT, f"survey {survey.id}", survey.name)
    return streamed_csv(survey.name, "survey", "answers",
                        lambda session: results_service.export_csv(session, survey_id))


@bp.post("/surveys/<int:survey_id>/delete")
@editor_required
def survey_delete(survey_id: int):
    get_or_404(db(), Survey, survey_id)
    survey_service.delete_survey(db(), survey_id)
    db().commit()
    flash("Survey deleted.", "info")
    return redirect(url_for("admin.surveys"))


@bp.app_template_global()
def survey_choices() -> list:
    """Surveys for the campaign form's survey picker."""
    return [s for s, _n in survey_service.list_surveys(db())]
