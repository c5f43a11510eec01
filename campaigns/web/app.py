"""Application factory: settings, runtime, login, blueprints, and the error pages every view shares.

Importing a blueprint module imports its package first, whose __init__ imports (and so registers) every view.
Views let a domain NotFound or ValidationError (campaigns.errors) propagate when all they would do is answer 404
or 400: the handlers here render the error page, or JSON for JSON requests.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, redirect, render_template, request, url_for
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from campaigns import (
    capabilities,  # noqa: F401 - every feature registers its part in messages
    logs,
)
from campaigns.config import Settings
from campaigns.config_checks import load_settings
from campaigns.db import parse_id
from campaigns.errors import NotFound, ValidationError
from campaigns.models import AdminUser
from campaigns.resources import static_dir, templates_dir
from campaigns.runtime import Runtime
from campaigns.web.admin.blueprint import bp as admin_bp
from campaigns.web.api.blueprint import bp as api_bp
from campaigns.web.context import csrf, db
from campaigns.web.probes import bp as probes_bp
from campaigns.web.public.blueprint import bp as public_bp
from campaigns.web.request_body import ChunkedBodyGuard

logger = logging.getLogger(__name__)
# Endpoints that accept large uploads (streamed to disk by werkzeug, never held in memory).
UPLOAD_ENDPOINTS = frozenset({"admin.contact_import"})
NOT_FOUND_MESSAGE = "This link is not valid. It may be mistyped or expired."


def wants_json() -> bool:
    """Whether the request is a JSON one: a JSON body, or an Accept header that prefers JSON."""
    return request.is_json or request.accept_mimetypes.best == "application/json"


def not_found(exc: NotFound) -> tuple[str | Response, int]:
    """A domain NotFound that reached the app: the 404 page (the same as for an unknown URL), or JSON."""
    if wants_json():
        return jsonify({"error": str(exc)}), 404
    return render_template("public/error.html", code=404, title="Page not found", message=NOT_FOUND_MESSAGE), 404


def invalid(exc: ValidationError) -> tuple[str | Response, int]:
    """A domain ValidationError that reached the app: a 400 page with its message, or JSON naming the field."""
    if wants_json():
        return jsonify({"error": str(exc), "field": exc.field}), 400
    return render_template("public/error.html", code=400, title="Bad request", message=str(exc)), 400


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the web app. config may hold SETTINGS (a Settings), lower-case Settings overrides, or Flask keys."""
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or load_settings()
    overrides = {k: config.pop(k) for k in list(config) if k.islower()}
    if overrides:
        settings = settings.with_overrides(overrides)
    app = Flask(__name__, template_folder=str(templates_dir()), static_folder=str(static_dir()),
                instance_path=str(settings.instance_path))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        # Admin sessions end after 2 hours without a request (idle) and 12 hours after login (absolute).
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=2),
        RAPPORT_SESSION_MAX_AGE=12 * 3600,
        MAX_CONTENT_LENGTH=50 * 1024 * 1024,
        # A CSV of a million contacts is ~100 MB; the import route streams it to disk, so it may be this large.
        RAPPORT_IMPORT_MAX_BYTES=512 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.config.update(config)
    if not app.testing:             # gunicorn configures only its own loggers; the app's go through this
        logs.configure(settings)
    runtime = Runtime(settings)
    app.extensions["rapport"] = runtime

    @app.before_request
    def upload_limit() -> None:
        # Registered before CSRFProtect, whose check is the first thing to read (and so parse) the form.
        if request.endpoint in UPLOAD_ENDPOINTS:
            request.max_content_length = app.config["RAPPORT_IMPORT_MAX_BYTES"]

    csrf.init_app(app)
    login = LoginManager(app)
    login.login_view = "admin.login"
    login.login_message = "Please log in to continue."

    @login.user_loader
    def load_user(user_id: str) -> AdminUser | None:
        ident = parse_id(user_id)
        user = db().get(AdminUser, ident) if ident is not None else None
        return user if user is not None and user.active else None

    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(public_bp)
    app.register_blueprint(probes_bp)
    app.register_blueprint(api_bp)

    @app.get("/")
    def index():
        return redirect(url_for("admin.dashboard"))

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return render_template("public/error.html", code=400, title="This form has expired",
                               message="Please go back, reload the page and try again."), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        limit = request.max_content_length or 0
        size = f"{limit / 2**20:,.0f} MB" if limit >= 2**20 else f"{limit / 1024:,.0f} KB"
        return render_template("public/error.html", code=413, title="This file is too large",
                               message=f"Uploads may be at most {size}. Split the file into smaller parts and "
                                       "upload them one after the other."), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        titles = {404: "Page not found", 405: "Not allowed", 413: "Too large", 400: "Bad request"}
        return render_template("public/error.html", code=exc.code, title=titles.get(exc.code or 0, exc.name),
                               message=exc.description if exc.code != 404 else NOT_FOUND_MESSAGE), exc.code

    app.register_error_handler(NotFound, not_found)
    app.register_error_handler(ValidationError, invalid)

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        logger.exception("unhandled error")
        return render_template("public/error.html", code=500, title="Something went wrong",
                               message="We could not finish this request. It has been logged."), 500

    app.wsgi_app = ChunkedBodyGuard(app.wsgi_app)
    if settings.base_url.startswith("https://"):
        @app.after_request
        def strict_transport(response):
            # Browsers that have seen the site over https never try http again (no downgrade on a hostile network).
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            return response

    if settings.trusted_proxies:   # outermost, so every layer (the tracking fast path too) sees the visitor
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    return app
