"""RFC 9457 problem details: every error the API answers is `application/problem+json` of this shape.

Only the API blueprint's errors go through here; the admin and public pages keep their HTML error pages.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, json
from pydantic import BaseModel, Field
from werkzeug.exceptions import HTTPException

from campaigns.coupons.assignment import OutOfCodes
from campaigns.coupons.redemption import RedeemError
from campaigns.errors import InvalidState, NotFound, RapportError, ValidationError

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "https://rapport.invalid/problems/"   # + slug; a stable identifier, not a page to fetch
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 410: "Gone", 413: "Content too large", 415: "Unsupported media type",
          422: "Unprocessable content", 429: "Too many requests", 500: "Internal server error",
          503: "Service unavailable"}
SLUGS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
         409: "conflict", 410: "gone", 413: "too-large", 415: "unsupported-media-type", 422: "invalid",
         429: "rate-limited", 500: "server-error", 503: "unavailable"}


class FieldError(BaseModel):
    """One invalid field of the request."""

    field: str = Field(description="Dotted path of the field, e.g. contacts.3.email")
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(description="URI identifying the kind of problem")
    title: str
    status: int
    detail: str = ""
    instance: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="Invalid fields (status 422)")


class ApiProblem(RapportError):
    """Raised anywhere in the API to answer with a problem; headers go on the response (Retry-After…)."""

    def __init__(self, status: int, detail: str = "", *, slug: str | None = None,
                 errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or SLUGS.get(status, "error")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(problem: ApiProblem, instance: str | None = None) -> Response:
    """The problem+json response; 401 carries the Bearer challenge."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE + problem.slug, "title": TITLES.get(problem.status, "Error"),
                            "status": problem.status, "detail": problem.detail}
    if instance:
        body["instance"] = instance
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    resp = Response(json.dumps(body), status=problem.status, mimetype="application/problem+json")
    resp.headers["Cache-Control"] = "no-store"
    if problem.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="rapport-api"'
    for name, value in problem.headers.items():
        resp.headers[name] = value
    return resp


def to_problem(exc: Exception) -> ApiProblem | None:
    """The problem a known exception stands for; None for an unexpected one (answered as 500 and logged)."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, RedeemError):
        return ApiProblem(exc.status, str(exc), extra={"code_status": exc.detail} if exc.detail else None)
    if isinstance(exc, NotFound):
        return ApiProblem(404, str(exc))
    if isinstance(exc, ValidationError):
        errors = [{"field": exc.field, "message": str(exc)}] if exc.field else None
        return ApiProblem(422, str(exc), errors=errors)
    if isinstance(exc, InvalidState | OutOfCodes):
        return ApiProblem(409, str(exc))
    if isinstance(exc, RapportError):
        return ApiProblem(422, str(exc))
    if isinstance(exc, HTTPException) and exc.code:
        return ApiProblem(exc.code, exc.description or "")
    return None
