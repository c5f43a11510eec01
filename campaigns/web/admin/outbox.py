"""Admin: the outbox of captured mail (search, message, body, web version), shown without tracking anything."""

from __future__ import annotations

from flask import Response, abort, render_template, request, url_for
from flask_login import login_required

from campaigns.composing import inspection
from campaigns.feedback import click_targets
from campaigns.ops import outbox_search
from campaigns.sending import digest as digest_service
from campaigns.web.admin.blueprint import bp
from campaigns.web.admin.helpers import PREVIEW_CSP, escape_text
from campaigns.web.context import db, rt
from mailer.capture import Outbox
from mailer.compose import web_page
from mailer.tracking import MAX_TOKEN_LENGTH, InvalidToken, Purpose


def _outbox() -> Outbox:
    return Outbox(rt().settings.outbox_path)


@bp.get("/outbox")
@login_required
def outbox():
    box = _outbox()
    before = request.args.get("before") or None
    query = outbox_search.OutboxQuery.from_args(request.args)
    names = outbox_search.campaign_names(db())
    try:
        if query.active:
            entries, more = box.search(outbox_search.matcher(query, names), limit=50, before=before)
        else:
            entries = box.list(limit=50, before=before)
            more = entries[-1].key if len(entries) == 50 else None
    except (KeyError, ValueError):
        abort(404)
    return render_template("admin/outbox.html", entries=entries, count=box.count(), more=more, query=query,
                           kinds=outbox_search.KINDS, campaigns=names, campaign_of=outbox_search.campaign_of,
                           test_prefix=outbox_search.TEST_PREFIX, capture=rt().settings.uses_capture)


@bp.get("/outbox/<key>")
@login_required
def outbox_message(key: str):
    try:
        message = _outbox().get(key)
    except KeyError:
        abort(404)
    return render_template("admin/outbox_message.html", message=message)


@bp.get("/outbox/<key>/body")
@login_required
def outbox_body(key: str) -> Response:
    try:
        message = _outbox().get(key)
    except KeyError:
        abort(404)
    body = _untracked(message.html) if message.html else f"<pre>{escape_text(message.text or '')}</pre>"
    return Response(body, mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})


@bp.get("/outbox/web/<token>")
@login_required
def outbox_web(token: str) -> Response:
    """A message's web version as the admin sees it: like /m/<token>, but nothing it does is tracked."""
    try:
        (send_id,) = rt().tokens.open(Purpose.WEB, token[:MAX_TOKEN_LENGTH + 1])
        html = digest_service.web_version(rt(), db(), send_id)
    except InvalidToken:
        abort(404)
    return Response(web_page(_untracked(html)), mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})


def _untracked(html: str) -> str:
    """Message HTML whose open pixel, click links and web-version links record nothing when the admin views it."""
    runtime = rt()
    return inspection.without_tracking(
        html, runtime.settings.base_url, runtime.tokens,
        lambda send_id, link_id: click_targets.link_target(runtime, db(), send_id, link_id),
        lambda token: url_for("admin.outbox_web", token=token),
        lambda tx_id, link_id: click_targets.tx_link_target(runtime, db(), tx_id, link_id))
