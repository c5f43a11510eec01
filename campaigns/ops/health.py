"""Readiness: can this process serve? The database answers, Redis answers, and the schema is at the newest migration."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from campaigns.resources import migrations_dir
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

MIGRATIONS = migrations_dir()
TIMEOUT = 2.0        # seconds: a load balancer's probe must not hang on a dead server


@lru_cache(maxsize=4)
def migration_heads(location: Path = MIGRATIONS) -> frozenset[str]:
    """The revision ids the code expects (read once per process from the migration scripts)."""
    from alembic.script import ScriptDirectory  # deferred: alembic is heavy and only readiness checks need it

    return frozenset(ScriptDirectory(str(location)).get_heads())


def _probe_redis(rt: Runtime) -> Redis:
    # A client of its own with short timeouts: the shared one waits as long as a worker job needs.
    if not rt.settings.redis_url:
        return rt.redis
    probe = rt.__dict__.get("_readiness_redis")
    if probe is None:
        probe = Redis.from_url(rt.settings.redis_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        rt.__dict__["_readiness_redis"] = probe
    return probe


def readiness(rt: Runtime) -> dict[str, str]:
    """{"database": "ok" | why not, "redis": …, "migrations": …}: everything "ok" means ready."""
    checks = {"database": "ok", "redis": "ok", "migrations": "ok"}
    try:
        with rt.engine.connect() as conn:
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError as exc:
        current = None
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0][:200]
        if "alembic_version" in reason:
            checks["migrations"] = "the database has no schema: run `python -m campaigns init`"
        else:
            checks["database"] = f"unreachable: {reason}"
            checks["migrations"] = "unknown (no database)"
    if current is not None:
        expected = migration_heads()
        if current != expected:
            checks["migrations"] = (f"database at {', '.join(sorted(current)) or 'nothing'}, code expects "
                                    f"{', '.join(sorted(expected))}: run `python -m campaigns init`")
    try:
        _probe_redis(rt).ping()
    except (RedisError, OSError) as exc:
        checks["redis"] = f"unreachable: {str(exc)[:200]}"
    return checks
