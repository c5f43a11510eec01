"""The admin blueprint: security headers, session expiry, role checks and template filters for every admin page.

View modules (imported by the package's __init__) register on bp; they import bp and the role decorators from here.
"""

from __future__ import annotations

import time
from functools import wraps

from flask import Blueprint, Response, abort, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, login_required, logout_user

from campaigns.models import AdminRole, CampaignStatus

bp = Blueprint("admin", __name__)

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


def editor_required(view):
    """Viewers may look but not change anything."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if current_user.role not in (AdminRole.ADMIN, AdminRole.EDITOR):
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def admin_required(view):
    """Settings and users: admins only."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if current_user.role != AdminRole.ADMIN:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


# Requests that change nothing; everything else needs at least the editor role (see _access_checks).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_TO_VIEWERS = frozenset({"admin.login", "admin.logout"})


@bp.before_request
def _access_checks():
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


@bp.app_template_filter("status_class")
def status_class(status: str) -> str:
    return {CampaignStatus.RUNNING: "ok", CampaignStatus.FINISHED: "done", CampaignStatus.PAUSED: "warn",
            CampaignStatus.CANCELLED: "muted"}.get(status, "")
