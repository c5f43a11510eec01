"""Prize draws on the recipient side: the one-click entry page (/d/<token>) and the draw's public page.

The entry link in a mail is sealed to (draw, contact) (Purpose.DRAW): GET and HEAD show the rules and an "Enter"
button and change nothing (mail scanners open every link); only the page's POST enters, once per contact. The public
page (/draws/<public id>, and its data as JSON) shows the committed seed hash, the opaque entry references and, once
drawn, the seed and the winners' references: no personal data. Subscribers may also ask for their entry link there
(campaigns.draws.page_entry): the answer is the same for every address.
"""

from __future__ import annotations

import logging

from flask import jsonify, render_template, request

from campaigns import recipient_urls
from campaigns.draws import drawing, page_entry
from campaigns.draws import service as draws
from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import Draw
from campaigns.signup.confirmation import RateLimitExceeded
from campaigns.web.context import csrf, db, rt
from campaigns.web.public.blueprint import bp, open_token
from mailer.tracking import Purpose

logger = logging.getLogger(__name__)


def _unavailable():
    return render_template("public/error.html", code=404, title="This draw is not available",
                           message="Sorry: this prize draw does not exist any more."), 404


@bp.route("/d/<token>", methods=["GET", "HEAD", "POST"])
@csrf.exempt   # the sealed token is the credential (no cookie needed), as for one-click unsubscribe
def draw_entry(token: str):
    draw_id, contact_id, via = open_token(Purpose.DRAW, token)
    session = db()
    draw = session.get(Draw, draw_id)
    if draw is None:
        return _unavailable()
    page = recipient_urls.draw_page(rt().settings.base_url, draw.public_id)
    if contact_id == 0:
        return render_template("public/draw_entry.html", draw=draw, test=True, entry=None, error="", page=page,
                               state=draws.state(draw))
    entry = draws.entry_of(session, draw.id, contact_id)
    error, new, status = "", False, 200
    if request.method != "POST" and entry is None:
        # Said before the button is pressed (reading only): outside the window, or not among those who may enter.
        current = draws.state(draw)
        if current == "upcoming":
            error = f"Entries open on {draw.opens_at:%Y-%m-%d at %H:%M} UTC."
        elif current != "open":
            error = "This draw is closed: entries are no longer accepted."
        elif not draws.eligible(session, draw, contact_id):
            error = "Sorry, this draw is open to selected subscribers only, and this address is not one of them."
    if request.method == "POST" and entry is None:
        try:
            entered = draws.enter(session, draw, contact_id, source=draws.SOURCES.get(via, "mail"))
            session.commit()
            entry, new = entered.entry, entered.new
        except RapportError as exc:
            session.rollback()
            error, status = str(exc), 409
    return render_template("public/draw_entry.html", draw=draw, test=False, entry=entry, new=new, error=error,
                           page=page, state=draws.state(draw),
                           posted=request.method == "POST"), status


@bp.route("/draws/<public_id>", methods=["GET", "HEAD", "POST"])
@csrf.exempt   # a public page anyone may post an address to: rate limits and the same answer for every address
def draw_page(public_id: str):
    session = db()
    try:
        draw = draws.by_public_id(session, public_id)
    except NotFound:
        return _unavailable()
    data = drawing.published(session, draw)
    if request.method != "POST":
        return render_template("public/draw.html", draw=draw, data=data, sent=False, error="", email="")
    session.rollback()   # nothing below reads the contact list: the same work for every address
    email = str(request.form.get("email", ""))[:320]
    if data["state"] != "open":
        return render_template("public/draw.html", draw=draw, data=data, sent=False, email=email,
                               error="Entries are not open."), 409
    try:
        page_entry.request_link(rt(), draw, email, (request.remote_addr or "")[:64])
    except RateLimitExceeded as exc:
        page = render_template("public/error.html", code=429, title="Please try again later",
                               message="There were too many requests from your network in the last hour.")
        return page, 429, {"Retry-After": str(max(1, int(exc.retry_after)))}
    except ValidationError as exc:
        return render_template("public/draw.html", draw=draw, data=data, sent=False, email=email,
                               error=str(exc)), 422
    return render_template("public/draw.html", draw=draw, data=data, sent=True, error="", email="")


@bp.get("/draws/<public_id>/data.json")
def draw_data(public_id: str):
    session = db()
    try:
        draw = draws.by_public_id(session, public_id)
    except NotFound:
        return jsonify({"error": "no such draw"}), 404
    resp = jsonify(drawing.published(session, draw))
    resp.headers["Cache-Control"] = "no-store"
    return resp
