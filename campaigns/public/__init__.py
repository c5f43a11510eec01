"""Recipient pages: open pixel, click redirect, one-click unsubscribe, preference center."""

from __future__ import annotations

import base64
import logging

from flask import Blueprint, Response, abort, redirect, render_template, request
from sqlalchemy import select

from campaigns.app import csrf, db, rt
from campaigns.errors import NotFound, ValidationError
from campaigns.models import ContactStatus, Topic
from campaigns.services import feedback
from mailer.tracking import InvalidToken, Purpose

logger = logging.getLogger(__name__)
bp = Blueprint("public", __name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache",
            "Expires": "0"}


def _open(purpose: Purpose, token: str) -> tuple[int, ...]:
    try:
        return rt().tokens.open(purpose, token)
    except InvalidToken:
        abort(404)


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


@bp.get("/o/<token>")
def open_pixel(token: str) -> Response:
    """1x1 GIF; records an open. Bad tokens still get the GIF (a broken image helps nobody) but record nothing."""
    try:
        (send_id,) = rt().tokens.open(Purpose.OPEN, token)
    except InvalidToken:
        send_id = 0
    if send_id:
        feedback.record_open(db(), send_id, request.headers.get("User-Agent", ""))
    return Response(PIXEL, mimetype="image/gif", headers=NO_CACHE)


@bp.route("/c/<token>", methods=["GET", "HEAD"])
def click(token: str) -> Response:
    """Redirect to the campaign's stored URL for this link; nothing in the request can choose the target."""
    send_id, link_id = _open(Purpose.CLICK, token)
    try:
        url, send = feedback.click_target(db(), send_id, link_id)
    except NotFound:
        abort(404)
    if request.method == "GET":
        feedback.record_click(db(), send, link_id, url, request.headers.get("User-Agent", ""))
    return redirect(url, code=302)


@bp.route("/u/<token>", methods=["GET", "POST"])
@csrf.exempt   # RFC 8058: mail clients POST without cookies; the sealed token is the credential
def unsubscribe(token: str):  # noqa: ANN201
    """GET shows a page and changes nothing (scanners follow links); POST unsubscribes at once."""
    contact_id, campaign_id = _open(Purpose.UNSUBSCRIBE, token)
    prefs_token = rt().tokens.seal(Purpose.PREFERENCES, contact_id) if contact_id else ""
    try:
        scope = feedback.resolve_unsubscribe(db(), contact_id, campaign_id)
    except NotFound:
        return render_template("public/unsubscribe_done.html", test=True, everything=True, topics=[]), 200
    if request.method == "GET":
        return render_template("public/unsubscribe.html", token=token, scope=scope, prefs_token=prefs_token)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    # One-click (from the mail client's button) stops all mail: that is what the person pressing it expects.
    everything = one_click or request.form.get("scope", "all") != "topics"
    feedback.unsubscribe(db(), scope, everything=everything, source="one-click" if one_click else "page")
    if one_click:
        return Response("Unsubscribed.\n", mimetype="text/plain")
    return render_template("public/unsubscribe_done.html", test=False, everything=everything or not scope.topics,
                           topics=scope.topics, prefs_token=prefs_token)


@bp.route("/p/<token>", methods=["GET", "POST"])
def preferences(token: str):  # noqa: ANN201
    """Preference center: topics, name, resubscribe."""
    (contact_id,) = _open(Purpose.PREFERENCES, token)
    session = db()
    try:
        scope = feedback.resolve_unsubscribe(session, contact_id, 0)
    except NotFound:
        abort(404)
    contact = scope.contact
    topics = list(session.scalars(select(Topic).where(Topic.public.is_(True)).order_by(Topic.name)))
    saved = False
    error = ""
    if request.method == "POST":
        ids = [int(v) for v in request.form.getlist("topics") if v.isdigit()]
        try:
            feedback.update_preferences(session, contact, topic_ids=ids,
                                        first_name=request.form.get("first_name", ""),
                                        last_name=request.form.get("last_name", ""),
                                        resubscribe=request.form.get("resubscribe") == "1")
            saved = True
        except ValidationError as exc:
            session.rollback()
            error = str(exc)
    subscribed = {s.topic_id for s in contact.subscriptions if s.subscribed}
    return render_template("public/preferences.html", contact=contact, topics=topics, subscribed=subscribed,
                           saved=saved, error=error, unsubscribed=contact.status != ContactStatus.SUBSCRIBED,
                           token=token)
