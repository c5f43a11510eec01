"""Open pixel and click redirect: validate the token, queue a hit, answer. No slow work inline.

Both run on every open and click, so valid hits are answered by a small WSGI layer in front of Flask
(TrackingFastPath, installed when the blueprint is registered) without building a Flask request; anything it does
not answer itself (bad tokens, unknown links, other methods) falls through to the Flask views below, which give
the same answers and render the friendly error pages.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, redirect, request
from werkzeug.urls import iri_to_uri

from campaigns.errors import NotFound
from campaigns.feedback import click_targets, hits
from campaigns.feedback import preferences as feedback
from campaigns.runtime import Runtime
from campaigns.web.context import db, rt, runtime_of
from campaigns.web.public.blueprint import SECURITY_HEADERS, bp, open_token
from mailer.compose import is_personalised
from mailer.tracking import MAX_TOKEN_LENGTH, InvalidToken, Purpose

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0", "Pragma": "no-cache",
            "Expires": "0"}


def _push(runtime: Runtime, kind: str, send_id: int, link_id: int, user_agent: str, ip: str, head: bool,
          tx_id: int = 0) -> None:
    hits.push(runtime, hits.Hit(kind=kind, send_id=send_id, link_id=link_id, at=time.time(),
                                user_agent=user_agent[:300], ip=ip, head=head, key=hits.new_key(), tx_id=tx_id))


def _open_send_id(runtime: Runtime, token: str) -> int:
    try:
        (send_id,) = runtime.tokens.open(Purpose.OPEN, token)
    except InvalidToken:
        return 0
    return send_id


@bp.route("/o/<token>", methods=["GET", "HEAD"])
def open_pixel(token: str) -> Response:
    """1x1 GIF; queues an open. Bad tokens still get the GIF (a broken image helps nobody) but record nothing."""
    send_id = _open_send_id(rt(), token)
    if send_id and request.method == "GET":   # test sends carry id 0 and record nothing
        _push(rt(), "open", send_id, 0, request.headers.get("User-Agent", ""), request.remote_addr or "", False)
    return Response(PIXEL, mimetype="image/gif", headers=NO_CACHE)


@bp.route("/c/<token>", methods=["GET", "HEAD"])
def click(token: str) -> Response:
    """Redirect to the campaign's stored URL for this link (a personalised one rendered for the send); nothing in
    the request can choose the target."""
    send_id, link_id = open_token(Purpose.CLICK, token)
    url = feedback.click_target(rt().engine, link_id)
    if is_personalised(url):   # rendered again from what the send had (campaigns.feedback.click_targets)
        url = click_targets.link_target(rt(), db(), send_id, link_id)
    if send_id:   # HEAD is recorded too, flagged as a machine by the writer
        _push(rt(), "click", send_id, link_id, request.headers.get("User-Agent", ""), request.remote_addr or "",
              request.method == "HEAD")
    resp = redirect(url, code=302)
    resp.headers.update(NO_CACHE)
    return resp


@bp.route("/to/<token>", methods=["GET", "HEAD"])
def tx_open_pixel(token: str) -> Response:
    """A transactional message's open pixel: as /o/, the hit names the message (its own token, no send row)."""
    try:
        (tx_id,) = rt().tokens.open(Purpose.TX_OPEN, token) if len(token) <= MAX_TOKEN_LENGTH else (0,)
    except InvalidToken:
        tx_id = 0
    if tx_id and request.method == "GET":
        _push(rt(), "open", 0, 0, request.headers.get("User-Agent", ""), request.remote_addr or "", False, tx_id)
    return Response(PIXEL, mimetype="image/gif", headers=NO_CACHE)


@bp.route("/tc/<token>", methods=["GET", "HEAD"])
def tx_click(token: str) -> Response:
    """A transactional message's link: its stored URL (a personalised one rendered with the message's contact and
    variables), the click queued like a campaign's."""
    tx_id, link_id = open_token(Purpose.TX_CLICK, token)
    url = click_targets.tx_link_target(rt(), db(), tx_id, link_id)
    _push(rt(), "click", 0, link_id, request.headers.get("User-Agent", ""), request.remote_addr or "",
          request.method == "HEAD", tx_id)
    resp = redirect(url, code=302)
    resp.headers.update(NO_CACHE)
    return resp


StartResponse = Callable[..., Any]


class TrackingFastPath:
    """WSGI middleware answering valid GET/HEAD /o/ and /c/ hits directly; everything else goes to Flask."""

    def __init__(self, app: Flask, wsgi_app: Callable[[dict, StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        common = [*SECURITY_HEADERS.items(), *NO_CACHE.items()]
        self.pixel_headers = [("Content-Type", "image/gif"), ("Content-Length", str(len(PIXEL))), *common]
        self.redirect_headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0"), *common]

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        kind = path[:3]
        if (method in ("GET", "HEAD") and kind in ("/o/", "/c/") and 3 < len(path) <= 3 + MAX_TOKEN_LENGTH
                and "/" not in path[3:]):
            runtime: Runtime = runtime_of(self.app)
            token = path[3:]
            ua = environ.get("HTTP_USER_AGENT", "")
            ip = environ.get("REMOTE_ADDR", "")
            if kind == "/o/":
                send_id = _open_send_id(runtime, token)
                if send_id and method == "GET":
                    _push(runtime, "open", send_id, 0, ua, ip, False)
                start_response("200 OK", self.pixel_headers)
                return [PIXEL] if method == "GET" else []
            try:
                send_id, link_id = runtime.tokens.open(Purpose.CLICK, token)
                url = feedback.click_target(runtime.engine, link_id)
            except (InvalidToken, NotFound):
                return self.wsgi_app(environ, start_response)   # Flask renders the friendly 404
            if is_personalised(url):
                return self.wsgi_app(environ, start_response)   # needs the send's data: the Flask view renders it
            if send_id:
                _push(runtime, "click", send_id, link_id, ua, ip, method == "HEAD")
            start_response("302 Found", [("Location", iri_to_uri(url)), *self.redirect_headers])
            return []
        return self.wsgi_app(environ, start_response)


@bp.record_once
def _install_fast_path(state) -> None:
    state.app.wsgi_app = TrackingFastPath(state.app, state.app.wsgi_app)
