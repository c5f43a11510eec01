"""Open pixel and click redirect: validate the token, queue a hit, answer. No slow work inline."""

from __future__ import annotations

import base64
import time

from flask import Response, abort, redirect, request

from campaigns.app import db, rt
from campaigns.errors import NotFound
from campaigns.public import bp, open_token
from campaigns.services import feedback, hits
from mailer.tracking import InvalidToken, Purpose

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0", "Pragma": "no-cache",
            "Expires": "0"}


def _hit(kind: str, send_id: int, link_id: int = 0) -> None:
    hits.push(rt(), hits.Hit(kind=kind, send_id=send_id, link_id=link_id, at=time.time(),
                             user_agent=request.headers.get("User-Agent", "")[:300],
                             ip=request.remote_addr or "", head=request.method == "HEAD", key=hits.new_key()))


@bp.route("/o/<token>", methods=["GET", "HEAD"])
def open_pixel(token: str) -> Response:
    """1x1 GIF; queues an open. Bad tokens still get the GIF (a broken image helps nobody) but record nothing."""
    try:
        (send_id,) = rt().tokens.open(Purpose.OPEN, token)
    except InvalidToken:
        send_id = 0
    if send_id and request.method == "GET":   # test sends carry id 0 and record nothing
        _hit("open", send_id)
    return Response(PIXEL, mimetype="image/gif", headers=NO_CACHE)


@bp.route("/c/<token>", methods=["GET", "HEAD"])
def click(token: str) -> Response:
    """Redirect to the campaign's stored URL for this link; nothing in the request can choose the target."""
    send_id, link_id = open_token(Purpose.CLICK, token)
    try:
        url = feedback.click_target(db(), send_id, link_id)
    except NotFound:
        abort(404)
    if send_id:
        _hit("click", send_id, link_id)   # HEAD is recorded too, flagged as a machine by the writer
    resp = redirect(url, code=302)
    resp.headers.update(NO_CACHE)
    return resp
