"""The API blueprint and what applies to all of it: CSRF exemption (keys, not cookies), problem+json for its
errors, the rate-limit and nosniff headers. Its view modules register their operations on `bp`."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from campaigns.web.api.guard import rate_headers
from campaigns.web.api.problems import ApiProblem, problem_response, to_problem
from campaigns.web.context import csrf, db

logger = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
csrf.exempt(bp)


@bp.errorhandler(Exception)
def _problem(exc: Exception) -> Response:
    """Every error of an API view as problem+json; unexpected ones are logged and answered 500."""
    try:
        db().rollback()
    except Exception:                      # the session itself may be what failed; the answer matters more
        logger.exception("rollback after an API error failed")
    problem = to_problem(exc)
    if problem is None:
        logger.exception("unhandled API error", exc_info=exc)
        problem = ApiProblem(500, "the request could not be completed; it has been logged")
    return problem_response(problem, request.path)


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return rate_headers(resp)
