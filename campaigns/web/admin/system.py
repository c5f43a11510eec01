"""Admin: System — are the workers alive, is the queue moving, does the scheduler tick, can we reach our servers."""

from __future__ import annotations

from flask import render_template
from redis.exceptions import RedisError

from campaigns import scheduler
from campaigns.ops import health, liveness
from campaigns.web.admin.blueprint import admin_required, bp
from campaigns.web.context import rt


@bp.get("/system")
@admin_required
def system():
    ready = health.readiness(rt())
    try:
        state, error = liveness.queue_state(rt(), scheduler.status(rt())[1]), ""
    except RedisError as exc:
        state, error = None, str(exc)
    return render_template("admin/system.html", ready=ready, state=state, error=error)
