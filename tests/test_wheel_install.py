"""The README's production steps, literally, from the built wheel in a fresh virtualenv outside the checkout.

Builds the wheel from a copy of the source with the wheels of its dependencies (pip, with the package registries and
pip's cache), installs them offline into a fresh virtualenv as deploy/Dockerfile does, runs
`rapport init` and `rapport create-admin` against a scratch PostgreSQL database, starts `rapport web` (gunicorn) and
`rapport-worker`, logs in over HTTP as through a TLS proxy, visits the admin's pages, presses *Send now* and counts
the messages at a real SMTP server on loopback.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from campaigns.db import make_engine, make_session_factory, scratch_database

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PG_SERVER = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
SOURCE_IGNORE = shutil.ignore_patterns(".git", ".venv", "instance", "artifacts", "build", "*.egg-info",
                                       "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "node_modules")


def postgres_or_skip() -> None:
    """Skip (fail in CI) when no PostgreSQL server answers."""
    import psycopg

    try:
        psycopg.connect(PG_SERVER.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3).close()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL for the wheel-install test: {exc}")
        pytest.skip(f"no PostgreSQL server answers at {PG_SERVER}: {exc}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv, outside the checkout, with the freshly built wheel installed; its bin/ directory."""
    postgres_or_skip()
    tmp = tmp_path_factory.mktemp("wheel")
    source, wheels, venv = tmp / "source", tmp / "dist", tmp / "venv"
    # A copy, so the build leaves nothing in the checkout and nothing stale in build/ reaches the wheel.
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # As deploy/Dockerfile does: a wheelhouse of Rapport and every dependency, then an offline install from it.
    done = subprocess.run([*pip, "wheel", "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BuildBackendWarning" not in done.stderr, done.stderr   # e.g. setuptools' license-table deprecation
    (wheel,) = wheels.glob("rapport-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    for top, inside in (("campaigns", "campaigns"), ("mailer", "mailer"), ("templates", "campaigns/templates"),
                        ("migrations", "campaigns/migrations")):
        for path in (source / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert f"{inside}/{path.relative_to(source / top).as_posix()}" in shipped, path
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install",
                           "--no-index", "--find-links", str(wheels), "rapport"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """Just enough of a browser for the admin: cookies (Secure ones too: the proxy terminates TLS), CSRF, forms."""

    def __init__(self, port: int) -> None:
        self.port, self.cookies = port, {}
        self.origin = f"https://127.0.0.1:{port}"

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"X-Forwarded-Proto": "https", "Referer": self.origin + path,
                   "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text

    def get(self, path: str) -> tuple[int, dict, str]:
        return self.request("GET", path)

    def submit(self, page: str, action: str, fields: dict[str, str]) -> tuple[int, dict, str]:
        """POST fields to action with the CSRF token of the form on page."""
        _status, _headers, html = self.get(page)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        return self.request("POST", action, {"csrf_token": token, **fields})


def wait_for(predicate, what: str, procs: list[subprocess.Popen], logs: list[Path], limit: float = 120) -> None:
    """Poll until predicate() holds; fail with the processes' logs when one dies or the limit passes."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{proc.args} exited with {proc.returncode} while waiting for {what}:\n"
                            + "\n".join(p.read_text()[-3000:] for p in logs))
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}:\n" + "\n".join(p.read_text()[-3000:] for p in logs))


@pytest.fixture()
def database() -> Iterator[str]:
    postgres_or_skip()
    with scratch_database(PG_SERVER, "rapport_wheel") as url:
        yield url


def seed(database_url: str, n: int) -> int:
    """A topic with n subscribed contacts and a draft newsletter to it (as an editor would make them); its id."""
    from campaigns.composing.editor import save_campaign
    from campaigns.contacts.records import save_contact
    from campaigns.models import Topic

    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        topic = Topic(name="Newsletter")
        session.add(topic)
        session.flush()
        for i in range(n):
            save_contact(session, {"email": f"reader{i}@example.com", "first_name": f"Reader{i}"}, topic_ids=[topic.id])
        campaign = save_campaign(session, {
            "name": "First issue", "kind": "nurture", "subject": "Hello {{ contact.first_name }}",
            "mjml": "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ contact.first_name }}, "
                    '<a href="https://example.com/news">our news</a>. {{ sender.postal_address }}'
                    "</mj-text></mj-column></mj-section></mj-body></mjml>"}, topic_ids=[topic.id])
        session.commit()
        campaign_id = campaign.id
    engine.dispose()
    return campaign_id


def test_the_wheel_installs_and_runs_a_send(installed, database, redis_server, smtp_sink, tmp_path) -> None:
    bin_dir, port = installed, free_port()
    _conn, redis_url = redis_server
    run_dir, instance = tmp_path / "run", tmp_path / "var-lib-rapport"
    run_dir.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "DATABASE_URL": database, "REDIS_URL": redis_url, "SMTP_URL": f"smtp://127.0.0.1:{smtp_sink.port}",
        "SECRET_KEY": secrets.token_urlsafe(48), "BASE_URL": "https://mail.example.com",
        "DKIM_DOMAIN": "example.com", "DKIM_SELECTOR": "wheel", "SENDER_NAME": "Example News",
        "POSTAL_ADDRESS": "Example Ltd, 1 High St, London", "RAPPORT_INSTANCE": str(instance),
        "RAPPORT_QUEUE": f"wheel-{uuid.uuid4().hex[:8]}", "TRUSTED_PROXIES": "1",
        "RAPPORT_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1",
    }

    def rapport(*args: str) -> str:
        done = subprocess.run([str(bin_dir / "rapport"), *args], env=env, cwd=run_dir, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    # The code runs from the virtualenv, not from the checkout.
    where = subprocess.run([str(bin_dir / "python"), "-c", "import campaigns, worker; print(campaigns.__file__)"],
                           env=env, cwd=run_dir, capture_output=True, text=True, check=True).stdout
    assert str(bin_dir.parent) in where and str(ROOT) not in where
    assert "Database is up to date." in rapport("init")
    assert (instance / "dkim" / "rapport.private.pem").exists()
    assert rapport("dkim-record").startswith("wheel._domainkey.example.com")
    password = secrets.token_urlsafe(16)
    assert "is ready" in rapport("create-admin", "--email", "ops@example.com", "--name", "Ops",
                                 f"--password={password}")    # one form: a password may start with "-"
    assert "fit for production" in rapport("check", "--config")
    campaign_id = seed(database, 3)

    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    with web_log.open("w") as wl, worker_log.open("w") as kl:
        procs = [subprocess.Popen([str(bin_dir / "rapport"), "web"], env=env, cwd=run_dir, stdout=wl,
                                  stderr=subprocess.STDOUT),
                 subprocess.Popen([str(bin_dir / "rapport-worker"), "--name", f"wheel-{os.getpid()}"], env=env,
                                  cwd=run_dir, stdout=kl, stderr=subprocess.STDOUT)]
    logs = [web_log, worker_log]
    try:
        browser = Browser(port)

        def web_answers() -> bool:
            try:
                return browser.get("/admin/login")[0] == 200
            except OSError:
                return False

        wait_for(web_answers, "the web app", procs, logs)
        status, headers, html = browser.get("/admin/login")
        assert "Strict-Transport-Security" in {k.title() for k in headers} and 'name="password"' in html
        status, headers, _ = browser.submit("/admin/login", "/admin/login",
                                            {"email": "ops@example.com", "password": password})
        assert status == 302 and urlsplit(headers["location"]).path == "/admin/"

        # Every admin page the navigation and the campaign lead to renders (no TemplateNotFound anywhere).
        status, _h, dashboard = browser.get("/admin/")
        assert status == 200
        pages = {"/admin/", f"/admin/campaigns/{campaign_id}", f"/admin/campaigns/{campaign_id}/report",
                 *(m for m in re.findall(r'href="(/admin/[^"?#]*)"', dashboard) if not m.endswith((".csv", ".json")))}
        for path in sorted(pages):
            status, headers, html = browser.get(path)
            assert status == 200 and headers["content-type"].startswith("text/html"), (path, status, html[-500:])
        assert len(pages) >= 8
        assert browser.get("/static/admin.css")[0] == 200
        status, _h, html = browser.get("/no/such/page")   # the error page is a template too
        assert status == 404 and "This link is not valid" in html

        status, _h, _ = browser.submit(f"/admin/campaigns/{campaign_id}", f"/admin/campaigns/{campaign_id}/send", {})
        assert status == 302
        wait_for(lambda: smtp_sink.outbox.count() >= 3, "three messages at the SMTP server", procs, logs)
        entries = smtp_sink.outbox.list()
        assert sorted(r for e in entries for r in e.recipients) == [f"reader{i}@example.com" for i in range(3)]
        message = smtp_sink.outbox.get(entries[0].key)
        assert message.raw.startswith(b"DKIM-Signature:") or b"\nDKIM-Signature:" in message.raw
        assert "https://mail.example.com/" in (message.html or "") and "Example Ltd, 1 High St" in (message.html or "")
        # A recipient's page from the mail itself: the sealed link opens (public templates, the same secret key).
        unsubscribe = dict(message.headers)["List-Unsubscribe"]
        (link,) = re.findall(r"<https://mail\.example\.com(/[^>]+)>", unsubscribe)
        status, headers, html = browser.get(link)
        assert status == 200 and headers["content-type"].startswith("text/html") and "<form" in html

        def finished() -> bool:
            return json.loads(browser.get(f"/admin/campaigns/{campaign_id}/progress")[2]).get("status") == "finished"

        wait_for(finished, "the campaign to finish", procs, logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # Nothing was written next to the installed code: keys, uploads and the rest went to RAPPORT_INSTANCE.
    site_packages = next(bin_dir.parent.glob("lib/python*/site-packages"))
    assert not (site_packages / "instance").exists() and (instance / "dkim").is_dir()
    combined = web_log.read_text() + worker_log.read_text()
    assert "Traceback" not in combined and "TemplateNotFound" not in combined, combined[-5000:]
    assert f'"GET /admin/campaigns/{campaign_id} HTTP/1.1" 200' in web_log.read_text()   # the access log
