"""The request context every view uses: the request's database session, the process Runtime, CSRF protection.

Views import these from here, never from the app factory, so the factory can import the blueprints without a cycle.
"""

from __future__ import annotations

from flask import Flask, current_app, g, has_request_context, request
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from campaigns.runtime import Runtime

csrf = CSRFProtect()


def runtime_of(app: Flask) -> Runtime:
    """The app's Runtime."""
    return app.extensions["rapport"]


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def db() -> Session:
    """The request's database session (one per request, closed on teardown).

    On SQLite, GET, HEAD and OPTIONS requests (which change nothing) get deferred transactions and never take the
    write lock, so a slow admin page cannot make a recipient's unsubscribe or a worker wait. Other methods take it
    up front (BEGIN IMMEDIATE): a deferred transaction that reads and then writes fails at once with "database is
    locked" when another writer committed in between.
    """
    if "db" not in g:
        runtime = runtime_of(current_app)
        reads_only = has_request_context() and request.method in READ_METHODS
        g.db = (runtime.read_session_factory if reads_only else runtime.session_factory)()
    return g.db


def rt() -> Runtime:
    """The current app's Runtime."""
    return runtime_of(current_app)
