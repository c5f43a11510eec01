"""The recipient-side blueprint: token opening, body limits, security headers and the brand on every page.

View modules (imported by the package's __init__) register on bp; they import bp and open_token from here.
Every URL carries a sealed token (mailer.tracking); a bad one gets a friendly 404 before the database is touched.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, g, request

from campaigns.accounts.settings_store import postal_address
from campaigns.composing.brand import Brand, brand
from campaigns.web.context import db, rt
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


@bp.context_processor
def _brand() -> dict[str, object]:
    """Who the page is from: the brand name and logo from Settings, and the postal address, on every page."""
    settings = rt().settings
    session = db()
    try:
        found, postal = brand(session, settings), postal_address(session, settings)
    except Exception:
        session.rollback()
        logger.warning("brand settings unavailable; recipient page shows the configured defaults", exc_info=True)
        found, postal = Brand(settings.sender_name, "", settings.default_language), settings.postal_address
    if found.logo_url:
        parts = urlsplit(found.logo_url)
        g.logo_origin = f"{parts.scheme}://{parts.netloc}"
    return {"brand": found, "postal_address": postal}


@bp.after_request
def _headers(resp: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    origin = g.get("logo_origin")
    if origin and "img-src 'self' data:;" in resp.headers.get("Content-Security-Policy", ""):
        # The logo set in Settings is the one image a recipient page loads from elsewhere.
        resp.headers["Content-Security-Policy"] = resp.headers["Content-Security-Policy"].replace(
            "img-src 'self' data:;", f"img-src 'self' data: {origin};")
    return resp
