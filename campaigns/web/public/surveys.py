"""The survey page: the answer clicked in the mail is preselected; the page asks the rest and records on POST.

Links are sealed tokens (Purpose.SURVEY); a forged or altered one gets the friendly 404 before the database is read.
GET and HEAD never record anything (security scanners and link checkers open every link of a mail).
"""

from __future__ import annotations

import logging

from flask import render_template, request

from campaigns.errors import NotFound, ValidationError
from campaigns.surveys import responses
from campaigns.surveys import service as survey_service
from campaigns.web.context import csrf, db
from campaigns.web.public.blueprint import bp, open_token
from mailer.tracking import Purpose

logger = logging.getLogger(__name__)


def _unavailable(message: str):
    return render_template("public/error.html", code=404, title="This survey is not available",
                           message=message), 404


@bp.route("/s/<token>", methods=["GET", "HEAD", "POST"])
@csrf.exempt   # the sealed token is the credential (no cookie needed; browsers send no Referer to this page)
def survey(token: str):
    send_id, question, code = open_token(Purpose.SURVEY, token)
    if send_id == 0:
        return render_template("public/survey_done.html", test=True, thanks=""), 200
    session = db()
    try:
        response = responses.open_response(session, send_id)
    except NotFound as exc:
        return _unavailable(f"Sorry: {exc}. Thank you for wanting to answer.")
    questions = response.survey.questions
    if question >= len(questions):
        return _unavailable("Sorry: this survey has changed since the mail was sent.")
    error = ""
    chosen: dict[int, str] = dict(response.answers)
    clicked: int | None = None
    if request.method == "POST":
        try:
            answers = responses.parse_answers(response.survey, request.form)
        except ValidationError as exc:
            error = str(exc)
            chosen.update({int(k[1:]): str(v)[:survey_service.MAX_TEXT] for k, v in request.form.items()
                           if k[:1] == "q" and k[1:].isdigit() and len(k) < 4})
        else:
            if not answers:
                error = "Please answer at least one question."
            else:
                responses.record_answers(session, response, answers, source="page")
                session.commit()
                return render_template("public/survey_done.html", test=False, thanks=response.survey.thanks)
    else:
        # Only the page's POST records: mail scanners and link checkers open every link of a mail (GET or HEAD),
        # so the answer clicked in the mail is preselected here and recorded when the person sends the form.
        answer = survey_service.answer_of_code(questions[question], code)
        if answer is not None:
            chosen[question] = answer
            clicked = question
    status = 422 if error else 200
    return render_template("public/survey.html", survey=response.survey, chosen=chosen, error=error,
                           clicked=clicked,
                           options=survey_service.options, token=token), status
