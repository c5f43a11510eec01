"""Marketer admin: login, dashboard, contacts, topics, campaigns (compose, preview, test, send), outbox."""

from __future__ import annotations

import logging
import time
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from campaigns.accounts import users as accounts
from campaigns.errors import NotFound, ValidationError
from campaigns.models import AdminRole, CampaignStatus, Topic
from campaigns.web.context import db, rt
from mailer.capture import Outbox

logger = logging.getLogger(__name__)
bp = Blueprint("admin", __name__)

# The preview and outbox bodies are marketer/sender HTML: shown only inside a sandboxed iframe, and served with a
# CSP that forbids scripts, forms and plugins even if opened directly.
PREVIEW_CSP = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; img-src * data:; "
               "style-src 'unsafe-inline' *; font-src * data:; base-uri 'none'; form-action 'none'")
# base-uri and form-action do not fall back to default-src: without them an injected <base> or <form> could send
# relative links, scripts or a form (with its CSRF token) to another site.
ADMIN_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-src 'self'; "
             "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")


@bp.after_request
def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("Content-Security-Policy", ADMIN_CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp


def editor_required(view):  # noqa: ANN001, ANN201
    """Viewers may look but not change anything."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):  # noqa: ANN202
        if current_user.role not in (AdminRole.ADMIN, AdminRole.EDITOR):
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def admin_required(view):  # noqa: ANN001, ANN201
    """Settings and users: admins only."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):  # noqa: ANN202
        if current_user.role != AdminRole.ADMIN:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


# Requests that change nothing; everything else needs at least the editor role (see _access_checks).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_TO_VIEWERS = frozenset({"admin.login", "admin.logout"})


@bp.before_request
def _access_checks():  # noqa: ANN202
    """End idle or too old sessions, and refuse every state-changing request from a viewer.

    Session times live in the signed session cookie: login_at (absolute limit RAPPORT_SESSION_MAX_AGE) and seen_at
    (idle limit PERMANENT_SESSION_LIFETIME, which Flask also enforces on the cookie itself).
    """
    if not current_user.is_authenticated:
        return None
    config = current_app.config
    now = int(time.time())
    idle = int(config["PERMANENT_SESSION_LIFETIME"].total_seconds())
    if (now - session.get("login_at", 0) > config["RAPPORT_SESSION_MAX_AGE"]
            or now - session.get("seen_at", 0) > idle):
        logout_user()
        session.clear()
        flash("Your session has expired. Please log in again.", "info")
        target = request.full_path if request.method == "GET" else None
        return redirect(url_for("admin.login", next=target))
    if now - session.get("seen_at", 0) > 30:
        session["seen_at"] = now
    if (request.method not in SAFE_METHODS and current_user.role == AdminRole.VIEWER
            and request.endpoint not in OPEN_TO_VIEWERS):
        abort(403)
    return None


# ------------------------------------------------------------------ auth

# Encoded slashes, backslashes and control characters: a later decoding step could turn them into a host.
_ENCODED_TRICKS = ("%2f", "%5c", "%00", "%09", "%0a", "%0d")


def local_path(raw: str) -> str | None:
    """raw if it is plainly a path on this site, else None: whatever a browser or Werkzeug would strip or
    reinterpret first (control and invisible characters, backslashes, encoded slashes) disqualifies it."""
    if not raw or len(raw) > 2000 or not raw.isprintable() or "\\" in raw:
        return None
    if raw[0] != "/" or raw[1:2] == "/":
        return None
    lowered = raw.lower()
    if any(code in lowered for code in _ENCODED_TRICKS):
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return None
    return raw


@bp.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = accounts.authenticate(db(), email, request.form.get("password", ""), request.remote_addr or "")
        except accounts.LoginThrottled as exc:
            flash(str(exc), "error")
            return render_template("admin/login.html", email=email[:320]), 429, {"Retry-After": str(exc.retry_after)}
        except ValidationError as exc:
            flash(str(exc), "error")
            return render_template("admin/login.html", email=email[:320]), 401
        db().commit()
        session.clear()                 # nothing from before the login survives it
        session.permanent = True
        login_user(user)
        session["login_at"] = session["seen_at"] = int(time.time())
        # Only local paths: never let a crafted link send a fresh login elsewhere.
        return redirect(local_path(request.args.get("next", "")) or url_for("admin.dashboard"))
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    return render_template("admin/login.html", email="")


@bp.post("/logout")
@login_required
def logout():  # noqa: ANN201
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))


# Dashboard and reports: campaigns/web/admin/reports.py


# Contacts list and contact page: campaigns/web/admin/contacts.py


# ------------------------------------------------------------------ topics

@bp.route("/topics", methods=["GET", "POST"])
@login_required
def topics():  # noqa: ANN201
    session = db()
    if request.method == "POST":
        if current_user.role == AdminRole.VIEWER:
            abort(403)
        name = request.form.get("name", "").strip()
        if not name:
            flash("A topic needs a name.", "error")
        elif session.scalar(select(Topic.id).where(func.lower(Topic.name) == name.lower())):
            flash(f"There is already a topic called {name}.", "error")
        else:
            session.add(Topic(name=name[:200], description=request.form.get("description", "")[:2000]))
            session.commit()
            flash(f"Topic {name} created.", "info")
            return redirect(url_for("admin.topics"))
    from campaigns.reports import summaries

    sizes = summaries.get(rt(), session, "topics", max_age=300)
    known = sizes.value or {}
    rows = [(topic, known.get(str(topic.id), 0 if sizes.value is not None else None))
            for topic in session.scalars(select(Topic).order_by(Topic.name))]
    return render_template("admin/topics.html", rows=rows, sizes=sizes)


# Campaigns (list, composer, preview, test, schedule, send, progress): campaigns/web/admin/campaigns.py


# ------------------------------------------------------------------ outbox

def _outbox() -> Outbox:
    return Outbox(rt().settings.outbox_path)


@bp.get("/outbox")
@login_required
def outbox():  # noqa: ANN201
    from campaigns.ops import outbox_search

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
def outbox_message(key: str):  # noqa: ANN201
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
    body = _untracked(message.html) if message.html else f"<pre>{_escape(message.text or '')}</pre>"
    return Response(body, mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})


@bp.get("/outbox/web/<token>")
@login_required
def outbox_web(token: str) -> Response:
    """A message's web version as the admin sees it: like /m/<token>, but nothing it does is tracked."""
    from campaigns.sending import digest as digest_service
    from mailer.compose import web_page
    from mailer.tracking import MAX_TOKEN_LENGTH, InvalidToken, Purpose

    try:
        (send_id,) = rt().tokens.open(Purpose.WEB, token[:MAX_TOKEN_LENGTH + 1])
        html = digest_service.web_version(rt(), db(), send_id)
    except (InvalidToken, NotFound):
        abort(404)
    return Response(web_page(_untracked(html)), mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})


def _untracked(html: str) -> str:
    """Message HTML whose open pixel, click links and web-version links record nothing when the admin views it."""
    from campaigns.composing import inspection
    from campaigns.feedback import click_targets

    runtime = rt()
    return inspection.without_tracking(
        html, runtime.settings.base_url, runtime.tokens,
        lambda send_id, link_id: click_targets.link_target(runtime, db(), send_id, link_id),
        lambda token: url_for("admin.outbox_web", token=token))


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


@bp.app_template_filter("status_class")
def status_class(status: str) -> str:
    return {CampaignStatus.RUNNING: "ok", CampaignStatus.FINISHED: "done", CampaignStatus.PAUSED: "warn",
            CampaignStatus.CANCELLED: "muted"}.get(status, "")
# Pages in their own modules register on bp; imported last because they import bp from here.
from campaigns.web.admin import (  # noqa: E402, F401, I001
    audit, automations, campaigns, contacts, contacts_io, coupons, notes, policy, post, reports, segments, settings,
    signups, surveys, system,
)
