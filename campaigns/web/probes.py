"""Endpoints for machines: /healthz and /readyz for load balancers, /metrics for Prometheus. No login, no cookie."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from campaigns import scheduler
from campaigns.metrics import QueueFigures, RapportCollector
from campaigns.ops import health, liveness
from campaigns.web.context import rt

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answers; nothing else is checked (a restart would not fix a dependency)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the database and Redis answer and the schema is current, else 503 naming what failed."""
    checks = health.readiness(rt())
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ready else "unavailable", "checks": checks}), 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition of the counters every process shares through Redis, and live queue gauges."""
    token = rt().settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode())):
            abort(401)
    registry = current_app.extensions.get("rapport_metrics")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RapportCollector(rt(), _queue_figures))
        current_app.extensions["rapport_metrics"] = registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _queue_figures() -> QueueFigures:
    """The live queue gauges of this app's runtime (read at each scrape)."""
    runtime = rt()
    return liveness.queue_state(runtime, scheduler.status(runtime)[1]).figures()


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp
