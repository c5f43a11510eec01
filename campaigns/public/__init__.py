"""Recipient side: open pixel, click redirect, one-click unsubscribe, preference center, relay webhooks.

Every URL carries a sealed token (mailer.tracking); a bad one gets a friendly 404 before the database is touched.
Tracking endpoints only push a compact hit onto Redis (campaigns.services.hits); a worker writes the events.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request

from campaigns.app import rt
from mailer.tracking import MAX_TOKEN_LENGTH, InvalidToken, Purpose

logger = logging.getLogger(__name__)
bp = Blueprint("public", __name__)

MAX_BODY = 64 * 1024          # recipient pages post a few fields; anything bigger is not a form of ours
MAX_WEBHOOK_BODY = 1024 * 1024


def open_token(purpose: Purpose, token: str) -> tuple[int, ...]:
    """The ids sealed in token for purpose, or a friendly 404."""
    if len(token) > MAX_TOKEN_LENGTH:
        abort(404)
    try:
        return rt().tokens.open(purpose, token)
    except InvalidToken:
        abort(404)


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = MAX_WEBHOOK_BODY if request.path.startswith("/webhooks/") else MAX_BODY


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Same-origin referrers only: recipient URLs carry tokens that must not leak to other sites, but Flask-WTF
    # checks the Referer of form posts over HTTPS (preferences, surveys, sign-up), so it must reach us.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}


@bp.after_request
def _headers(resp: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


from campaigns.public import digest, pages, signup, surveys, tracking, webhooks  # noqa: E402, F401  (register the views on bp)
