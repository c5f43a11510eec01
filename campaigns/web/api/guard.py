"""What runs around every key-authenticated API operation: the key, its scope, its rate limit, idempotency.

Order: the key (401), the rate limit (429, counted for every authenticated request), the scope (403), then for a
POST with an Idempotency-Key header the replay check, then the view.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Response, g, json, request
from redis import RedisError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from campaigns.accounts import api_keys
from campaigns.models import ApiKey, IdempotencyRecord, utcnow
from campaigns.web.api.problems import ApiProblem, problem_response, to_problem
from campaigns.web.api.spec import HOOKS, Operation
from campaigns.web.context import db, rt

logger = logging.getLogger(__name__)

WINDOW = 60                      # seconds of one rate-limit window
KEEP_RECORDS = dt.timedelta(hours=24)
# A record still in progress after this long belongs to a request that died; a retry may run again.
STALE_IN_PROGRESS = dt.timedelta(minutes=5)
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class Caller:
    """The key a request authenticated with (plain values: the auth session is closed by then)."""

    id: int
    name: str
    scopes: frozenset[str]
    rate_limit: int


def caller() -> Caller:
    """The current request's key (set by authenticate)."""
    return g.api_caller


def _presented() -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def authenticate(op: Operation) -> None:
    """Find the key (401 when missing, unknown or revoked), record its use at most once a minute."""
    presented = _presented()
    if not presented:
        raise ApiProblem(401, "send an API key: Authorization: Bearer rk_…")
    runtime = rt()
    with runtime.read_session_factory() as session:
        key = api_keys.find_key(session, presented)
        if key is None:
            raise ApiProblem(401, "the API key is unknown or was revoked")
        found = Caller(key.id, key.name, frozenset(key.scopes or ()), key.rate_limit)
        touch = api_keys.needs_touch(key)
    if touch:
        with runtime.session_factory() as session:
            row = session.get(ApiKey, found.id)
            if row is not None:
                row.last_used_at = utcnow()
                session.commit()
    g.api_caller = found


def rate_limit(op: Operation) -> None:
    """A fixed one-minute window per key in Redis; over the limit: 429 with Retry-After. Fails open when Redis is
    down (the API keeps working; the error is logged)."""
    who = caller()
    now = time.time()
    window = int(now // WINDOW)
    name = f"{rt().settings.queue_name}:api-rate:{who.id}:{window}"
    try:
        pipe = rt().redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, WINDOW * 2)
        used = int(pipe.execute()[0])
    except RedisError:
        logger.exception("API rate limit not checked: Redis is unavailable")
        return
    reset = max(1, int((window + 1) * WINDOW - now + 0.999))
    g.api_rate = (who.rate_limit, max(0, who.rate_limit - used), reset)
    if used > who.rate_limit:
        raise ApiProblem(429, f"this key may make {who.rate_limit} requests a minute; retry in {reset} s",
                         headers={"Retry-After": str(reset)})


def check_scope(op: Operation) -> None:
    if op.scope is not None and op.scope.value not in caller().scopes:
        raise ApiProblem(403, f"this key lacks the scope {op.scope.value}", extra={"required_scope": op.scope.value})


def _guard(op: Operation) -> None:
    if op.scope is None:
        return
    authenticate(op)
    rate_limit(op)
    check_scope(op)


# ------------------------------------------------------------------ idempotency

def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.get_data(cache=True)):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    status = record.status or 200
    mimetype = "application/problem+json" if status >= 400 else "application/json"
    resp = Response(json.dumps(record.response) if record.response is not None else "", status=status,
                    mimetype=mimetype)
    if record.headers:
        resp.headers["Location"] = record.headers
    resp.headers["Idempotent-Replayed"] = "true"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _claim(key: str, fingerprint: str) -> IdempotencyRecord | Response:
    """Insert the in-progress record (committed), or answer from the one already there."""
    session = db()
    who = caller()
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - KEEP_RECORDS))
    record = IdempotencyRecord(api_key_id=who.id, key=key, fingerprint=fingerprint, headers="")
    session.add(record)
    try:
        session.commit()
        return record
    except IntegrityError:
        session.rollback()
    found = session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.api_key_id == who.id,
                                                           IdempotencyRecord.key == key))
    if found is None:     # pruned in between: try once more
        return _claim(key, fingerprint)
    if found.fingerprint != fingerprint:
        session.rollback()
        raise ApiProblem(422, "this Idempotency-Key was used with a different request; use a new key",
                         slug="idempotency-key-reused")
    if found.status is None:
        if utcnow() - found.created_at < STALE_IN_PROGRESS:
            session.rollback()
            raise ApiProblem(409, "a request with this Idempotency-Key is still running; retry shortly",
                             slug="idempotency-in-progress", headers={"Retry-After": "1"})
        found.created_at = utcnow()       # its request died: this retry runs it
        session.commit()
        return found
    answer = _replay(found)
    session.rollback()
    return answer


def idempotent(op: Operation, inner: Callable[[], Response]) -> Response:
    """Run a POST once per Idempotency-Key: a retry with the same body gets the stored answer (any status below
    500 except 409 and 429), the same key with another body gets 422."""
    key = request.headers.get("Idempotency-Key")
    if not op.idempotent or key is None:
        return inner()
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not all(33 <= ord(c) <= 126 for c in key):
        raise ApiProblem(422, f"the Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters",
                         errors=[{"field": "Idempotency-Key", "message": "invalid"}])
    claimed = _claim(key, _fingerprint())
    if isinstance(claimed, Response):
        return claimed
    record_id = claimed.id
    try:
        resp = inner()
    except Exception as exc:
        problem = to_problem(exc)
        db().rollback()
        if problem is None:
            _forget(record_id)
            raise
        resp = problem_response(problem, request.path)
    session = db()
    session.rollback()           # the view committed what it did; nothing else may ride along
    if resp.status_code >= 500 or resp.status_code in (409, 429):
        _forget(record_id)
        return resp
    record = session.get(IdempotencyRecord, record_id)
    if record is not None:
        body = resp.get_data()
        record.status = resp.status_code
        record.response = json.loads(body) if body else None
        record.headers = resp.headers.get("Location", "")[:1000]
        session.commit()
    return resp


def _forget(record_id: int) -> None:
    session = db()
    session.rollback()
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
    session.commit()


def rate_headers(resp: Response) -> Response:
    """RateLimit-* headers on every answer to an authenticated request."""
    rate = g.get("api_rate")
    if rate is not None:
        limit, remaining, reset = rate
        resp.headers["RateLimit-Limit"] = str(limit)
        resp.headers["RateLimit-Remaining"] = str(remaining)
        resp.headers["RateLimit-Reset"] = str(reset)
    return resp


HOOKS.before.append(_guard)
HOOKS.wrap.append(idempotent)
