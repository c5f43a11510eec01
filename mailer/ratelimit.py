"""Sliding-window send-rate limits shared by every worker through Redis.

Algorithm: an exact sliding window kept as a ring buffer of grant timestamps, one per window.

A limit of L sends per W seconds means that no interval of length W may contain more than L grants. Grants are
numbered in the order Redis serialises them, so a request for n more is allowed exactly when the grant that
would become the (L+1)-th most recent has already left the window. That grant lives in ring slot
``(count + n - 1) % L``, so each decision reads one 8-byte slot and writes n of them: O(1) time and 8*L bytes
per window (100,000/hour costs 800 KB in Redis, where a sorted-set log of it measured ~10 MB).

Why not GCRA/token bucket: with a burst of L it lets up to 2*L-1 sends through in the first window after an
idle period, which breaks hourly caps that relays enforce as rolling windows. Why not a sorted-set log: it
is exact too, but costs a skiplist node per send. The ring gives the same answers as the log for far less.

Every window of a limiter is checked and updated in one Lua script, so the per-second and per-hour limits
hold together across processes and machines. Time comes from the Redis server's TIME so that workers with
skewed clocks still agree; tests may inject a clock instead. The ring's key carries L and W, so changing a
limit starts a fresh window rather than misreading the old ring.
"""

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailer.transport import RelayConfig

logger = logging.getLogger(__name__)

__all__ = ["RateLimited", "RateLimiter", "relay_limiter_factory"]

# Keys are kept this long after the window they describe, so a slow test or a brief pause never loses history.
_KEY_GRACE_MS = 60_000

# KEYS: one ring per window. ARGV: n, now ('' = use server TIME), then limit and window (seconds) per key.
# Ring layout: 8-byte grant counter, then `limit` slots of little-endian float64 timestamps.
_ACQUIRE_LUA = """
local n = tonumber(ARGV[1])
local now
if ARGV[2] == '' then
  -- Redis < 5 only replicates scripts that call TIME if they switch to effects replication first.
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[2])
end

local counts = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  local head = redis.call('GETRANGE', key, 0, 7)
  local count = 0
  if #head == 8 then count = struct.unpack('<d', head) end
  counts[i] = count
  -- The grant that would be pushed out of the last `limit` by this request; unwritten slots read as 0.
  local slot = (count + n - 1) % limit
  local raw = redis.call('GETRANGE', key, 8 + slot * 8, 15 + slot * 8)
  if #raw == 8 then
    local w = struct.unpack('<d', raw) + window - now
    -- Capped at the window so a server clock stepping backwards cannot stall senders for longer.
    if w > window then w = window end
    if w > wait then wait = w end
  end
end
if wait > 0 then return tostring(wait) end

local stamp = struct.pack('<d', now)
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  if counts[i] == 0 then
    -- Size a new ring exactly in one go; growing it by SETRANGE would over-allocate up to twofold.
    redis.call('SETRANGE', key, 7 + limit * 8, string.char(0))
  end
  local first = counts[i] % limit
  local run = math.min(n, limit - first)
  redis.call('SETRANGE', key, 8 + first * 8, string.rep(stamp, run))
  if run < n then redis.call('SETRANGE', key, 8, string.rep(stamp, n - run)) end
  redis.call('SETRANGE', key, 0, struct.pack('<d', counts[i] + n))
  redis.call('PEXPIRE', key, math.ceil(window * 1000) + tonumber(ARGV[#ARGV]))
end
return '0'
"""


class RateLimited(Exception):
    """The rate limit is exhausted; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"rate limit reached; retry after {self.retry_after:.3f}s"


class RateLimiter:
    """Per-second and per-hour sliding-window limits on one Redis key, shared by every holder of that key."""

    def __init__(
        self,
        redis: Any,
        key: str,
        per_second: float | None = None,
        per_hour: int | None = None,
        *,
        now: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Limit sends on ``key``; ``now`` and ``sleep`` exist so tests can drive time without waiting."""
        if not key:
            raise ValueError("rate limiter key must not be empty")
        self.key = key
        self.per_second = per_second
        self.per_hour = per_hour
        self._now = now
        self._sleep = sleep
        # A hash tag keeps every window of one limiter in one cluster slot, as a multi-key script requires.
        base = key if "{" in key else f"{{{key}}}"
        self._windows: list[tuple[str, int, float]] = []
        if per_second is not None:
            limit, window = _second_window(per_second)
            self._windows.append((f"{base}:{limit}/{window:g}s", limit, window))
        if per_hour is not None:
            if isinstance(per_hour, bool) or int(per_hour) != per_hour or per_hour < 1:
                raise ValueError(f"per_hour must be a positive integer, not {per_hour!r}")
            self._windows.append((f"{base}:{int(per_hour)}/3600s", int(per_hour), 3600.0))
        self._script = redis.register_script(_ACQUIRE_LUA) if self._windows else None

    @property
    def capacity(self) -> int | None:
        """Largest n that acquire() can ever grant at once, or None when unlimited."""
        return min(limit for _, limit, _ in self._windows) if self._windows else None

    def acquire(self, n: int = 1, *, block: bool = True, max_wait: float = 60.0) -> float:
        """Reserve n sends: wait until allowed and return the seconds waited, or raise RateLimited."""
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        if self._script is None:
            return 0.0
        capacity = self.capacity
        if capacity is not None and n > capacity:
            raise ValueError(f"cannot acquire {n} at once: {self.key} allows at most {capacity} per window")
        waited = 0.0
        while True:
            retry_after = self._try(n)
            if retry_after <= 0:
                return waited
            if not block or waited + retry_after > max_wait:
                raise RateLimited(retry_after)
            logger.debug("rate limit %s: waiting %.3fs for %d", self.key, retry_after, n)
            self._sleep(retry_after)
            # Waiting is measured as time asked to sleep so an injected clock gives exact, repeatable figures.
            waited += retry_after

    def _try(self, n: int) -> float:
        """Run one atomic check-and-reserve; return 0.0 when granted, else seconds until it could be."""
        now = "" if self._now is None else repr(float(self._now()))
        args: list[Any] = [n, now]
        for _, limit, window in self._windows:
            args += [limit, repr(window)]
        args.append(_KEY_GRACE_MS)
        result = self._script(keys=[key for key, _, _ in self._windows], args=args)
        return float(result)


def _second_window(per_second: float) -> tuple[int, float]:
    """Express a per-second rate as L sends per W seconds with an integer L and the same average rate."""
    if isinstance(per_second, bool) or not (math.isfinite(per_second) and per_second > 0):
        raise ValueError(f"per_second must be a positive finite number, not {per_second!r}")
    if per_second >= 1:
        # 2.5/s becomes 2 per 0.8 s: a whole number of sends per window, and the same average rate.
        limit = math.floor(per_second)
        return limit, limit / per_second
    return 1, 1 / per_second


def relay_limiter_factory(
    redis: Any, prefix: str = "rapport:ratelimit:relay"
) -> "Callable[[RelayConfig], RateLimiter | None]":
    """Return a RelayRouter limiter_factory that gives each rate-limited relay a limiter keyed by its name."""

    def factory(relay: "RelayConfig") -> RateLimiter | None:
        if relay.rate_per_second is None and relay.rate_per_hour is None:
            return None
        return RateLimiter(redis, f"{prefix}:{relay.name}", relay.rate_per_second, relay.rate_per_hour)

    return factory
