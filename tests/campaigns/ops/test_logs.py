"""Logging configured in one place: timestamps, levels, JSON on request, and job fields on every job line."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns import logs
from campaigns.sending import lifecycle as sending
from tests.campaigns.ops.test_liveness import worker_env

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_worker_job_lines_carry_campaign_batch_and_job_id_as_json(runtime, db_session, make_contacts,
                                                                   make_campaign, outbox) -> None:
    topic, _ = make_contacts(25)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    # Per-batch lines are DEBUG (a big campaign has hundreds of batches): an operator who wants them sets LOG_LEVEL.
    env = dict(worker_env(runtime.settings), LOG_FORMAT="json", LOG_LEVEL="DEBUG",
               DKIM_DOMAIN=runtime.settings.dkim_domain,
               DKIM_SELECTOR=runtime.settings.dkim_selector, RAPPORT_BATCH_SIZE="20")
    proc = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outbox.count() == 25
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]   # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(line["ts"].endswith("Z") for line in lines)
    batches = [line for line in lines if line["logger"] == "campaigns.sending.delivery"
               and line["message"].startswith(f"campaign {campaign.id} batch")]
    assert len(batches) == 2                     # 25 contacts, batches of 20
    for line in batches:
        assert line["campaign_id"] == campaign.id
        lo, hi = line["batch"].split("-")
        assert line["message"].startswith(f"campaign {campaign.id} batch {lo}-{hi}:")
        assert line["job_id"]
    assert len({line["job_id"] for line in batches}) == 2
    dispatch = [line for line in lines if line["logger"] == "campaigns.sending.lifecycle"
                and "dispatched" in line["message"]]
    assert dispatch and dispatch[0]["campaign_id"] == campaign.id and "batch" not in dispatch[0]
    # RQ's own lines outside a job carry no job fields
    assert any(line["logger"].startswith("rq.") and "job_id" not in line for line in lines)


def test_text_format_has_timestamp_level_logger_and_fields(settings, capsys, restore_logging) -> None:
    logs.configure(settings)
    log = logging.getLogger("campaigns.somewhere")
    with logs.job_context(job_id="j-1", campaign_id=7, batch="1-500"):
        log.warning("about to %s", "send")
    log.info("outside")
    err = capsys.readouterr().err.splitlines()
    inside = next(line for line in err if "about to send" in line)
    assert inside.split()[1:3] == ["WARNING", "campaigns.somewhere:"]
    assert inside.split()[0].endswith("Z") and inside.split()[0][:2] == "20"
    assert inside.endswith("[campaign_id=7 batch=1-500 job_id=j-1]")
    assert next(line for line in err if "outside" in line).endswith("campaigns.somewhere: outside")


def test_the_web_app_configures_logging(settings, capsys, restore_logging) -> None:
    from campaigns.web.app import create_app

    app = create_app({"SETTINGS": settings.with_overrides({"log_format": "json"})})   # as under gunicorn

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaput")

    assert app.test_client().get("/boom").status_code == 500
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    error = next(line for line in lines if line["message"] == "unhandled error")
    assert error["level"] == "ERROR" and "RuntimeError: kaput" in error["exc"]


@pytest.mark.skipif(importlib.util.find_spec("sentry_sdk") is not None, reason="sentry-sdk is installed")
def test_sentry_dsn_without_sentry_sdk_is_a_warning(settings, capsys, restore_logging) -> None:
    logs.configure(settings.with_overrides({"sentry_dsn": "https://key@sentry.example/1"}))
    assert "sentry-sdk is not installed" in capsys.readouterr().err


def test_gunicorn_lines_and_app_lines_share_one_json_format(runtime, tmp_path: Path) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from campaigns.logs import gunicorn_logconfig\nlogconfig_dict = gunicorn_logconfig()\n")
    env = dict(worker_env(runtime.settings), LOG_FORMAT="json")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(conf), "-w", "1", "-b", f"127.0.0.1:{port}",
                             "wsgi:app"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:         # wait for gunicorn to boot
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "gunicorn did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in (out + err).splitlines() if line.strip()]    # every line is JSON
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert any("GET /healthz" in line["message"] for line in access)
    assert any("Booting worker" in line["message"] for line in lines)
