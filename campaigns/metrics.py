"""Prometheus metrics shared by every process: workers count into one Redis hash, the web app's /metrics reads it.

Workers and the web app run on different machines, so process-local counters would show only what the web process
did. Instead every recorder adds to the hash `rapport:metrics` with HINCRBY (one pipeline per batch: one round trip)
and `RapportCollector` turns the hash into Prometheus metrics on each scrape, together with live gauges read from
Redis (queue depth, oldest job age, live workers, the scheduler's last tick) that the operations layer computes
(campaigns.ops.liveness) and hands to the collector as a callable returning QueueFigures. Counters only ever grow;
they survive worker restarts and vanish only with Redis itself, which Prometheus' rate() treats as a counter reset.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

KEY = "rapport:metrics"
SEP = "\t"
# Batch durations (seconds): a batch of a few hundred messages takes seconds; a stuck relay makes it minutes.
BATCH_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, math.inf)
OUTCOMES = ("sent", "failed", "deferred", "unknown")


def _field(*parts: object) -> str:
    return SEP.join(str(p).replace(SEP, " ") for p in parts)


def _bucket(seconds: float) -> str:
    le = next(b for b in BATCH_BUCKETS if seconds <= b)
    return "+Inf" if le == math.inf else repr(le)


def record_batch(redis: Redis, relay: str, kind: str, *, sent: int = 0, failed: int = 0, deferred: int = 0,
                 unknown: int = 0, seconds: float | None = None, held_by_rule: Mapping[str, int] | None = None) -> None:
    """Count one send batch's outcomes (per relay and campaign kind), its duration and its policy holds by rule.

    One pipeline, one round trip; a Redis error is logged and swallowed: metrics never fail a send.
    """
    pipe = redis.pipeline(transaction=False)
    for outcome, n in zip(OUTCOMES, (sent, failed, deferred, unknown), strict=True):
        if n:
            pipe.hincrby(KEY, _field("messages", relay or "default", kind, outcome), n)
    for rule, n in (held_by_rule or {}).items():
        if n:
            pipe.hincrby(KEY, _field("held", rule), n)
    if seconds is not None:
        pipe.hincrby(KEY, _field("batch_bucket", _bucket(seconds)), 1)
        pipe.hincrbyfloat(KEY, _field("batch_sum"), seconds)
        pipe.hincrby(KEY, _field("batch_count"), 1)
    _execute(pipe)


def record_hits(redis: Redis, by_kind: Mapping[str, int]) -> None:
    """Count tracking hits written to the database (kind: open or click)."""
    pipe = redis.pipeline(transaction=False)
    for kind, n in by_kind.items():
        if n:
            pipe.hincrby(KEY, _field("hits", kind), n)
    _execute(pipe)


def record_webhook(redis: Redis, relay: str, results: Iterable[str]) -> None:
    """Count one webhook delivery from a relay and the result of each of its events (bounce, rejected, …)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(KEY, _field("webhook", relay), 1)
    for result in results:
        pipe.hincrby(KEY, _field("webhook_event", relay, result), 1)
    _execute(pipe)


def record_holds(redis: Redis, held_by_rule: Mapping[str, int]) -> None:
    """Count messages the contact policy held, by rule (for callers outside a send batch)."""
    pipe = redis.pipeline(transaction=False)
    for rule, n in held_by_rule.items():
        if n:
            pipe.hincrby(KEY, _field("held", rule), n)
    _execute(pipe)


def _execute(pipe) -> None:
    try:
        pipe.execute()
    except RedisError as exc:
        logger.warning("metrics not recorded: %s", exc)


@dataclass(frozen=True)
class QueueFigures:
    """The live queue gauges /metrics exports, as computed by whoever knows the queue (campaigns.ops.liveness)."""

    jobs: Mapping[str, int]                    # jobs per registry: queued, started, scheduled, deferred, failed
    oldest_age: dt.timedelta | None            # of the oldest job waiting (None: nothing waits)
    workers_alive: int
    scheduler_tick_age: dt.timedelta | None    # since a scheduler last ticked (None: never)


class RapportCollector(Collector):
    """Reads the shared counters from Redis and asks queue_figures for the live queue state at each scrape.

    queue_figures may raise RedisError: the scrape then reports rapport_redis_up 0, like an unreadable hash.
    """

    def __init__(self, runtime, queue_figures: Callable[[], QueueFigures]) -> None:
        self.runtime = runtime
        self.queue_figures = queue_figures

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rapport_redis_up", "1 when /metrics could read Redis, else 0")
        try:
            raw = self.runtime.redis.hgetall(KEY)
            yield from self._counters({k.decode(): v.decode() for k, v in raw.items()})
            yield from self._queue()
        except RedisError as exc:
            logger.warning("metrics: Redis unreachable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

    def _counters(self, values: dict[str, str]) -> Iterator[Metric]:
        messages = CounterMetricFamily("rapport_messages", "Messages handed to a relay, by outcome",
                                       labels=["relay", "kind", "outcome"])
        held = CounterMetricFamily("rapport_policy_holds", "Messages held by the contact policy, by rule",
                                   labels=["rule"])
        hits = CounterMetricFamily("rapport_tracking_hits", "Tracking hits written, by kind", labels=["kind"])
        webhooks = CounterMetricFamily("rapport_webhook_deliveries", "Webhook requests from relays",
                                       labels=["relay"])
        events = CounterMetricFamily("rapport_webhook_events", "Webhook events by result",
                                     labels=["relay", "result"])
        buckets: dict[str, float] = {}
        batch_sum = batch_count = 0.0
        for field, value in sorted(values.items()):
            name, *labels = field.split(SEP)
            if name == "messages" and len(labels) == 3:
                messages.add_metric(labels, float(value))
            elif name == "held" and len(labels) == 1:
                held.add_metric(labels, float(value))
            elif name == "hits" and len(labels) == 1:
                hits.add_metric(labels, float(value))
            elif name == "webhook" and len(labels) == 1:
                webhooks.add_metric(labels, float(value))
            elif name == "webhook_event" and len(labels) == 2:
                events.add_metric(labels, float(value))
            elif name == "batch_bucket" and len(labels) == 1:
                buckets[labels[0]] = float(value)
            elif name == "batch_sum":
                batch_sum = float(value)
            elif name == "batch_count":
                batch_count = float(value)
        yield from (messages, held, hits, webhooks, events)
        cumulative, running = [], 0.0
        for le in BATCH_BUCKETS:
            label = "+Inf" if le == math.inf else repr(le)
            running += buckets.get(label, 0.0)
            cumulative.append((label, running))
        batch = HistogramMetricFamily("rapport_batch_duration_seconds", "Time one send batch job took")
        batch.add_metric([], cumulative, sum_value=batch_sum)
        yield batch
        del batch_count   # the +Inf bucket is the count

    def _queue(self) -> Iterator[Metric]:
        figures = self.queue_figures()
        jobs = GaugeMetricFamily("rapport_queue_jobs", "Jobs in the queue's registries", labels=["state"])
        for name, n in figures.jobs.items():
            jobs.add_metric([name], n)
        yield jobs
        yield GaugeMetricFamily("rapport_queue_oldest_job_age_seconds",
                                "Age of the oldest job waiting in the queue (0 when empty)",
                                value=figures.oldest_age.total_seconds() if figures.oldest_age else 0.0)
        yield GaugeMetricFamily("rapport_workers_alive", "Workers whose heartbeat is recent",
                                value=figures.workers_alive)
        tick_age = figures.scheduler_tick_age
        yield GaugeMetricFamily("rapport_scheduler_last_tick_age_seconds",
                                "Seconds since a worker's scheduler last ticked (-1: never)",
                                value=tick_age.total_seconds() if tick_age is not None else -1.0)


def age(since: dt.datetime | None, now: dt.datetime) -> dt.timedelta | None:
    """now - since, for timestamps that may be naive UTC (RQ's) or aware."""
    if since is None:
        return None
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return max(now - since, dt.timedelta(0))
