"""Claims: which worker process holds which send rows, for how long, and which of them it handed to SMTP.

A batch job claims queued rows (queued -> sending) with this process's owner id and a short lease. A heartbeat
thread renews the lease of every live claim with one UPDATE every few seconds, so a claim whose lease ran out
belongs to a dead (or long-blocked) worker; a claim of a process on this machine that no longer exists is taken
back at once. Right before a message goes to the relay its send id joins a
per-owner Redis set (the hand-off record), and right after the relay's 250 is read it moves to the owner's
delivered set; outcomes are written only to rows still claimed by this owner and their ids then leave the sets.
recover() — run by the sweeper — turns expired claims into `sent` (delivered), `unknown` (handed without a
reply read: the relay may have the message) or back into `queued` (never handed: sent normally). Before it reads the
hand-off set it revokes the owner, so a worker that was only blocked cannot hand over another of those rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Sequence

from redis.exceptions import RedisError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from campaigns import stops
from campaigns.models import Campaign, Contact, Send, SendStatus, utcnow
from campaigns.runtime import Runtime
from campaigns.sending import policy as policy_service

logger = logging.getLogger(__name__)

HANDED_TTL = 24 * 3600
CLAIM_SECONDS = 60    # a rate-limited relay: claim at most about this many seconds of its rate at a time

# KEYS: stopped zset, handed set, revoked flag. ARGV: since, send id, stop members…
# 1: recorded as handed; 0: the contact stopped after `since`; -1: this owner's claims were revoked.
HANDOFF_LUA = f"""
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local since = tonumber(ARGV[1])
for i = 3, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) >= since then return 0 end
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], {HANDED_TTL})
return 1
"""

class ClaimRevoked(Exception):
    """The sweeper took this process's claims back (its lease ran out): hand nothing more over."""


def _key(rt: Runtime, *parts: object) -> str:
    return ":".join(["rapport", rt.settings.queue_name, *map(str, parts)])


def handed_key(rt: Runtime, owner: str) -> str:
    return _key(rt, "handed", owner)


def delivered_key(rt: Runtime, owner: str) -> str:
    return _key(rt, "delivered", owner)


def revoked_key(rt: Runtime, owner: str) -> str:
    return _key(rt, "revoked", owner)


def new_owner() -> str:
    """A claim owner id unique to this process (and this incarnation of it)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


class Lessee:
    """This process's live claims: their owner id, the heartbeat renewing their lease, and hand-off records."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pid = os.getpid()
        self.owner = new_owner()
        self._live: set[int] = set()
        self._markers: dict[str, int] = {}   # Redis keys kept alive while this process works (see sweeper)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._handoff = rt.redis.register_script(HANDOFF_LUA)
        self.handoff_sha: str = self._handoff.sha
        self._owner_keys: dict[str, tuple[str, str, str, str]] = {}

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.rt.settings.claim_lease)

    def renew_owner(self) -> None:
        """Take a fresh owner id after a revocation (the old one's rows belong to the sweeper now)."""
        with self._lock:
            self.owner = new_owner()

    def hold(self, ids: Iterable[int]) -> None:
        """Keep renewing the lease of these rows until release()."""
        with self._lock:
            self._live.update(ids)
            self._start()

    def release(self, ids: Sequence[int], *, forget_handed: bool = True, owner: str | None = None) -> None:
        """Stop renewing these rows; forget their hand-off records once their outcome is written."""
        with self._lock:
            self._live.difference_update(ids)
        if forget_handed and ids:
            try:
                pipe = self.rt.redis.pipeline(transaction=False)
                pipe.srem(handed_key(self.rt, owner or self.owner), *ids)
                pipe.srem(delivered_key(self.rt, owner or self.owner), *ids)
                pipe.execute()
            except RedisError:
                logger.warning("could not clear %d hand-off records (they expire by themselves)", len(ids))

    def keep_alive(self, key: str, seconds: int) -> None:
        """Refresh a Redis key's TTL on every heartbeat until drop()."""
        with self._lock:
            self._markers[key] = seconds
            self._start()

    def drop(self, key: str) -> None:
        with self._lock:
            self._markers.pop(key, None)
        try:
            self.rt.redis.delete(key)
        except RedisError:
            pass

    def handoff(self, owner: str, send_id: int, members: Sequence[str], since: float) -> bool:
        """Record the hand-off of one message; False if its contact stopped since `since` (nothing recorded).
        (The send path makes this call, and the acceptance record after the 250, on a sender thread's own
        connection: campaigns.sending.records.)

        Raises ClaimRevoked when the sweeper took this owner's claims back, RedisError when Redis is away.
        """
        stopped, handed, revoked, _delivered = self.keys(owner)
        got = self._handoff(keys=[stopped, handed, revoked], args=[since, send_id, *members])
        if got == -1:
            raise ClaimRevoked(owner)
        return got == 1

    def keys(self, owner: str) -> tuple[str, str, str, str]:
        """The Redis keys of one owner's hand-off records (built once per owner: they are used per message)."""
        keys = self._owner_keys.get(owner)
        if keys is None:
            keys = (stops.key(self.rt.settings.queue_name), handed_key(self.rt, owner), revoked_key(self.rt, owner),
                    delivered_key(self.rt, owner))
            self._owner_keys = {owner: keys}   # one owner at a time (a fresh one after a revocation)
        return keys

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._beat, name="rapport-lease", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        every = self.rt.settings.heartbeat_seconds
        while True:
            time.sleep(every)
            with self._lock:
                ids, owner, markers = list(self._live), self.owner, dict(self._markers)
                if not ids and not markers:
                    self._thread = None   # nothing to keep alive; hold() or keep_alive() starts a new one
                    return
            if ids:
                try:
                    self.renew(ids, owner)
                except SQLAlchemyError:
                    logger.warning("lease renewal failed (database away?); retrying", exc_info=True)
            for key, seconds in markers.items():
                try:
                    self.rt.redis.expire(key, seconds)
                except RedisError:
                    logger.warning("could not refresh %s", key)

    def renew(self, ids: Sequence[int], owner: str) -> None:
        """Push the lease of these rows forward (only rows still claimed by owner)."""
        until = utcnow() + self.lease
        with self.rt.session_factory() as session:
            session.execute(update(Send).where(Send.id.in_(ids), Send.claimed_by == owner,
                                               Send.status == SendStatus.SENDING)
                            .values(lease_until=until).execution_options(synchronize_session=False))
            session.commit()


def lessee(rt: Runtime) -> Lessee:
    """The Lessee of this runtime in this process (a forked child gets its own)."""
    current = rt.__dict__.get("_lessee")
    if current is None or current.pid != os.getpid():
        current = rt.__dict__["_lessee"] = Lessee(rt)
    return current


def size(claim_size: int, relay) -> int:
    """Rows per claim: the configured claim_size, or fewer when the relay's rate limit would make one claim last
    longer than CLAIM_SECONDS (its rows, policy decisions and eligibility check stay fresh)."""
    rates = [r for r in (relay.rate_per_second, relay.rate_per_hour and relay.rate_per_hour / 3600) if r]
    return max(1, min(claim_size, int(min(rates) * CLAIM_SECONDS))) if rates else claim_size


def claim(session: Session, rt: Runtime, campaign_id: int, lo: int, hi: int, n: int,
          owner: str) -> tuple[list[tuple[int, int, int]], dict[int, dt.datetime]]:
    """Claim up to n due queued rows of the campaign in contact range [lo, hi].

    Returns (send id, contact id, attempts) in contact order, and each claimed send's creation time. The caller
    commits at once (before deciding anything else about the rows), so the claim holds no lock for long.
    """
    now = utcnow()
    pick = (select(Send.id).where(Send.campaign_id == campaign_id, Send.status == SendStatus.QUEUED,
                                  Send.contact_id.between(lo, hi),
                                  or_(Send.next_attempt_at.is_(None), Send.next_attempt_at <= now))
            .order_by(Send.contact_id).limit(n))
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = session.execute(
        update(Send).where(Send.id.in_(pick.scalar_subquery()))
        .values(status=SendStatus.SENDING, claimed_at=now, attempts=Send.attempts + 1, claimed_by=owner,
                lease_until=now + dt.timedelta(seconds=rt.settings.claim_lease))
        .returning(Send.id, Send.contact_id, Send.attempts, Send.created_at)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((r[0], r[1], r[2]) for r in rows), {r[0]: r[3] for r in rows}


def recover(rt: Runtime, campaign_id: int, now: dt.datetime | None = None) -> tuple[int, int]:
    """Settle the campaign's claims whose lease ran out; returns (re-queued, unknown).

    Rows the relay accepted become sent, rows handed over without a reply unknown, the rest queued again.
    """
    now = now or utcnow()
    with rt.session_factory() as session:   # its own: committed owner by owner
        gone = _dead_local_owners(session, campaign_id)
        expired = (Send.campaign_id == campaign_id, Send.status == SendStatus.SENDING,
                   or_(Send.lease_until < now, Send.lease_until.is_(None), Send.claimed_by.in_(gone)))
        dead: dict[str, list[int]] = {}
        for send_id, owner in session.execute(select(Send.id, Send.claimed_by).where(*expired)):
            dead.setdefault(owner or "", []).append(send_id)
        session.commit()
        requeued = unknown = 0
        for owner, ids in dead.items():
            handed: set[int] = set()
            accepted: set[int] = set()
            if owner:
                # Revoke first: once the flag is set no hand-off of this owner can be recorded, so the sets read next
                # are complete, and a worker that was only blocked stops before giving any of these rows to SMTP.
                pipe = rt.redis.pipeline()
                pipe.set(revoked_key(rt, owner), 1, ex=HANDED_TTL)
                pipe.smembers(handed_key(rt, owner))
                pipe.smembers(delivered_key(rt, owner))
                _, members, done = pipe.execute()
                accepted = {int(m) for m in done} & set(ids)
                handed = ({int(m) for m in members} & set(ids)) - accepted
            if accepted:
                _record_accepted(session, campaign_id, accepted, expired, now)
            back = [i for i in ids if i not in handed and i not in accepted]
            if handed:
                unknown += session.execute(
                    update(Send).where(Send.id.in_(handed), *expired)
                    .values(status=SendStatus.UNKNOWN, lease_until=None,
                            last_error="outcome unknown: the worker stopped after handing the message to the relay "
                                       "and before recording its reply; the relay may or may not have it")
                    .execution_options(synchronize_session=False)).rowcount or 0
            if back:
                n = session.execute(
                    update(Send).where(Send.id.in_(back), *expired)
                    .values(status=SendStatus.QUEUED, attempts=Send.attempts - 1, claimed_by=None, lease_until=None,
                            next_attempt_at=None)
                    .execution_options(synchronize_session=False)).rowcount or 0
                requeued += n
                policy_service.unreserve(session, back)
            session.commit()
            if handed or accepted:
                try:
                    pipe = rt.redis.pipeline(transaction=False)
                    for k, members in ((handed_key(rt, owner), handed), (delivered_key(rt, owner), accepted)):
                        if members:
                            pipe.srem(k, *members)
                    pipe.execute()
                except RedisError:
                    pass
    if requeued or unknown:
        logger.warning("campaign_id=%s: recovered dead claims: %d back to the queue, %d outcome unknown",
                       campaign_id, requeued, unknown)
    return requeued, unknown


def _dead_local_owners(session: Session, campaign_id: int) -> list[str]:
    """Owners of the campaign's claims that ran on this machine in a process that no longer exists.

    Their claims need not wait for the lease: the process is gone. (Should a pid belong to another container with
    the same host name, the revocation still keeps every message from going out twice; it only costs unknowns.)
    """
    return [owner for owner in session.scalars(select(Send.claimed_by).where(
        Send.campaign_id == campaign_id, Send.status == SendStatus.SENDING).distinct()) if owner_gone(owner)]


def owner_gone(owner: str | None) -> bool:
    """Whether owner (an id of new_owner()) was a process on this machine that no longer exists."""
    name, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if name != socket.gethostname()[:32] or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass   # alive, another user's
    return False


def _record_accepted(session: Session, campaign_id: int, ids: set[int], expired: tuple, now: dt.datetime) -> None:
    """Rows the relay had accepted (250) before their worker died: sent, as the worker would have written."""
    rows = session.execute(
        update(Send).where(Send.id.in_(ids), *expired)
        .values(status=SendStatus.SENT, smtp_code=250, sent_at=now, last_error="", lease_until=None)
        .returning(Send.contact_id).execution_options(synchronize_session=False)).all()
    if rows:
        session.execute(update(Contact).where(Contact.id.in_([r[0] for r in rows])).values(last_sent_at=now))
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(sent=Campaign.sent + len(rows)))
