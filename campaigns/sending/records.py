"""A sender thread's own Redis connection for the two records it makes per message (see claims): the hand-off
(asked right before MAIL FROM, its answer read before the message's data: HandOff) and the relay's 250
right after it is read.

Why not the shared client: a call through redis-py's client takes a connection from the pool and gives it back,
under a lock, with its retry wrapper — about twice the CPU of the command itself — and each call that waits for
its reply makes the sender thread take the GIL back from the rendering thread once more. Here each sender thread
keeps one connection, and the acceptance record is written without waiting for its reply: Redis executes the
commands of a connection in order, so it is applied before the next hand-off on that connection, whose round trip
reads both replies. A worker killed after the write leaves it in the socket, which Redis still reads and applies
(nothing of ours is unread on the connection then, so the kernel closes it normally); a write that fails is logged
and the worker still writes the outcome to the database itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError, RedisError, ResponseError

from campaigns.sending import claims

logger = logging.getLogger(__name__)


class Line:
    """One sender thread's connection; not shared between threads. close() gives it back to the pool."""

    def __init__(self, lessee: claims.Lessee) -> None:
        self.lessee = lessee
        self.pool = lessee.rt.redis.connection_pool
        self.conn = self.pool.get_connection()
        self.unread = 0            # replies of acceptance records not read yet
        self.sha = lessee.handoff_sha
        self._asked: tuple[str, tuple] | None = None    # the hand-off sent by ask(), its answer not read yet

    def ask(self, owner: str, send_id: int, members: Sequence[str], since: float) -> None:
        """Send the hand-off script (claims.HANDOFF_LUA, as claims.Lessee.handoff) for send_id without waiting:
        answer() reads what it says, and the replies of the acceptance records written before it. Between the two the
        sender thread writes the SMTP envelope, so the two round trips overlap. Raises RedisError if the write
        fails (nothing was asked then)."""
        stopped, handed, revoked, _delivered = self.lessee.keys(owner)
        self._asked = (owner, (3, stopped, handed, revoked, since, send_id, *members))
        try:
            self.conn.send_command("EVALSHA", self.sha, *self._asked[1])
        except RedisError:
            self._asked = None
            self._reset()
            raise

    def answer(self) -> bool:
        """What the script sent by ask() said: True handed over, False the contact stopped; raises ClaimRevoked
        (the sweeper took the claim back) or RedisError."""
        asked, self._asked = self._asked, None
        if asked is None:
            raise RuntimeError("answer() without ask()")
        owner, args = asked
        try:
            got = self._read()
        except NoScriptError:
            # Redis restarted and forgot the script: run it from its text (EVAL caches it again).
            got = self._call("EVAL", claims.HANDOFF_LUA, *args)
        if got == -1:
            raise claims.ClaimRevoked(owner)
        return got == 1

    def accepted(self, owner: str, send_id: int) -> None:
        """Move send_id from the owner's handed set to its delivered set (the relay answered 250), without waiting
        for Redis's reply. Never raises: the outcome reaches the database through the worker anyway."""
        _stopped, handed, _revoked, delivered = self.lessee.keys(owner)
        conn = self.conn
        try:
            conn.send_packed_command(conn.pack_commands([("SMOVE", handed, delivered, send_id),
                                                         ("EXPIRE", delivered, claims.HANDED_TTL)]))
            self.unread += 2
        except RedisError as exc:
            self._reset()
            logger.warning("send %s: could not record the relay's acceptance in Redis: %s", send_id, exc)

    def close(self) -> None:
        """Read what is still unread (the connection goes back to the pool clean) and give it back."""
        try:
            if self.unread:
                self._call("PING")
        except RedisError:
            self._reset()
        self.pool.release(self.conn)

    def _call(self, *args: Any) -> Any:
        """Send one command; read the replies of earlier unacknowledged records, then its own."""
        try:
            self.conn.send_command(*args)
        except RedisError:
            self._reset()
            raise
        return self._read()

    def _read(self) -> Any:
        """Read the replies of the acceptance records sent before the last command, then the last command's."""
        conn = self.conn
        try:
            unread, self.unread = self.unread, 0
            for _ in range(unread):
                try:
                    conn.read_response()
                except ResponseError as exc:     # an acceptance record Redis refused (the row's outcome is ours)
                    logger.warning("an acceptance record failed in Redis: %s", exc)
            return conn.read_response()
        except ResponseError:
            raise                # an error reply, read whole: the connection is fine
        except RedisError:
            self._reset()
            raise

    def _reset(self) -> None:
        """Drop the connection (it reconnects on next use): a half-read reply must not be read as another's."""
        self.unread = 0
        self.conn.disconnect()


class Stopped(Exception):
    """The contact stopped (unsubscribed, bounced…) after the claim's check: not handed to the relay."""


class NotHanded(Exception):
    """Something failed before the message reached SMTP (Redis away, a revoked claim): hand the row back."""


class HandOff:
    """One message's hand-off record as the SMTP pool's gate (mailer.transport.Gate; handoff.Handoff makes one per
    message): the script goes to Redis right before MAIL FROM and its answer is read once the relay answered the
    pipelined envelope, before any of the message's data: one round trip fewer per message, the same check at the
    same moment. A stop raises Stopped; Redis away or a revoked claim raises NotHanded."""

    __slots__ = ("line", "owner", "send_id", "members", "since", "asked", "outcome")

    def __init__(self, line: Line, owner: str, send_id: int, members: list[str], since: float) -> None:
        self.line, self.owner, self.send_id, self.members, self.since = line, owner, send_id, members, since
        self.asked: Exception | None = None      # why the question could not be sent
        self.outcome: Exception | bool | None = None   # None: not answered yet

    def start(self) -> None:
        try:
            self.line.ask(self.owner, self.send_id, self.members, self.since)
        except RedisError as exc:
            self.asked = exc

    def finish(self) -> None:
        if self.outcome is None:
            try:
                if self.asked is not None:
                    raise self.asked
                self.outcome = self.line.answer() or Stopped()
            except (RedisError, claims.ClaimRevoked) as exc:
                self.outcome = NotHanded(str(exc) or type(exc).__name__)
                self.outcome.__cause__ = exc
        if isinstance(self.outcome, Exception):
            raise self.outcome
