"""Recipient pages: double opt-in signup (hosted form, the endpoint embedded forms post to) and confirmation.

Embedded forms post from other sites, so there is no session CSRF token: a form is named by its random public id,
bots are caught by a honeypot field and posts are rate limited per IP and per address (campaigns.signup.service).
The answer to a valid post is always the same "check your inbox" page, whatever the address.
"""

from __future__ import annotations

import logging

from flask import render_template, request

from campaigns.errors import NotFound, ValidationError
from campaigns.signup import service as signup_service
from campaigns.web.context import csrf, db, rt
from campaigns.web.public.blueprint import bp
from mailer.tracking import MAX_TOKEN_LENGTH, InvalidToken

logger = logging.getLogger(__name__)


def _no_form():
    return render_template("public/error.html", code=404, title="This sign-up form is not available",
                           message="It may have been closed. Please check the address of the page."), 404


def _client() -> tuple[str, str]:
    return (request.remote_addr or "")[:64], request.headers.get("User-Agent", "")[:300]


@bp.route("/signup/<public_id>", methods=["GET", "HEAD", "POST"])
@csrf.exempt   # embedded forms post from other sites: public id + honeypot + rate limits instead (module doc)
def signup_form(public_id: str):
    session = db()
    try:
        form = signup_service.public_form(session, public_id)
    except NotFound:
        return _no_form()
    if request.method != "POST":
        return render_template("public/signup.html", form=form, values={}, chosen=None, error="", field="",
                               honeypot=signup_service.HONEYPOT)
    ip, agent = _client()
    values = {k: str(request.form.get(k, ""))[:320] for k in ("email", "first_name")}
    chosen = {str(t)[:20] for t in request.form.getlist("topics")[:50]}
    session.rollback()   # nothing below reads the contact list: same work for every address
    try:
        if request.form.get(signup_service.HONEYPOT, ""):
            signup_service.admit(rt().redis, ip, None)   # bots count against their IP, and get the usual answer
            logger.info("signup honeypot filled (form %s)", form.id)
            return render_template("public/signup_sent.html", form=form)
        req = signup_service.parse_request(form, request.form, chosen, ip=ip, user_agent=agent)
        if signup_service.admit(rt().redis, ip, req.email):
            signup_service.submit(rt(), req)
    except signup_service.RateLimitExceeded as exc:
        page = render_template("public/error.html", code=429, title="Please try again later",
                               message="There were too many sign-ups from your network in the last hour. "
                                       "Please try again later.")
        return page, 429, {"Retry-After": str(max(1, int(exc.retry_after)))}
    except ValidationError as exc:
        return render_template("public/signup.html", form=form, values=values, chosen=chosen,
                               error=_sentence(str(exc)), field=exc.field or "",
                               honeypot=signup_service.HONEYPOT), 422
    return render_template("public/signup_sent.html", form=form)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


@bp.route("/signup/confirm/<token>", methods=["GET", "HEAD", "POST"])
@csrf.exempt   # the sealed token is the credential; GET changes nothing (mail scanners follow links)
def signup_confirm(token: str):
    if len(token) > MAX_TOKEN_LENGTH:
        return _bad_link()
    session = db()
    ip, agent = _client()
    try:
        if request.method == "POST":
            result = signup_service.confirm(session, rt(), token, ip=ip, user_agent=agent)
            session.commit()
        else:
            result = signup_service.open_confirmation(session, rt(), token)
    except InvalidToken:
        return _bad_link()
    status = {"expired": 410, "unavailable": 410}.get(result.outcome, 200)
    return render_template("public/signup_confirm.html", result=result, token=token), status


def _bad_link():
    return render_template("public/error.html", code=404, title="This confirmation link is not valid",
                           message="It may be mistyped or cut short. Copy the whole link from the mail, or sign "
                                   "up again."), 404
