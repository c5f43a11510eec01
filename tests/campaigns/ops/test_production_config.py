"""Production refuses an unsafe configuration; demo mode and explicit local trials do not; https gets HSTS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.config import from_env
from campaigns.config_checks import UnsafeConfigError, load_settings, unsafe_settings
from campaigns.web.app import create_app

SAFE = {
    "SECRET_KEY": "k" * 32,
    "BASE_URL": "https://mail.example.com",
    "POSTAL_ADDRESS": "Example Ltd, 1 High St, London",
    "SENDER_NAME": "Example News",
    "DKIM_DOMAIN": "example.com",
}


def production_env(tmp_path: Path, **changes: str) -> dict[str, str]:
    """An environment without the test suite's RAPPORT_ALLOW_INSECURE, with its own instance directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_") and k not in SAFE}
    env.update(SAFE, RAPPORT_INSTANCE=str(tmp_path / "instance"), DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_a_safe_environment_passes(tmp_path) -> None:
    settings = load_settings(production_env(tmp_path))
    assert settings.base_url == "https://mail.example.com" and settings.sender_email == "news@example.com"


def test_every_problem_is_listed_at_once_and_no_key_is_generated(tmp_path) -> None:
    env = production_env(tmp_path, SECRET_KEY="x", BASE_URL="http://mail.example.com", POSTAL_ADDRESS=None,
                         SENDER_NAME=None, DKIM_DOMAIN=None)
    with pytest.raises(UnsafeConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    for name in ("SECRET_KEY is 1 bytes", "BASE_URL must be a public https://", "POSTAL_ADDRESS", "SENDER_NAME",
                 "SENDER_EMAIL", "RAPPORT_ALLOW_INSECURE=1"):
        assert name in message
    assert len(caught.value.problems) == 5
    assert not (tmp_path / "instance" / "secret_key").exists()


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("SECRET_KEY", None, "SECRET_KEY is not set"),
    ("SECRET_KEY", "é" * 15, "SECRET_KEY is 30 bytes"),
    ("BASE_URL", None, "BASE_URL is not set"),
    ("BASE_URL", "https://", "BASE_URL must be a public https://"),
    ("POSTAL_ADDRESS", "   ", "POSTAL_ADDRESS is not set"),
])
def test_each_unsafe_value_is_named(tmp_path, name, value, needle) -> None:
    problems = unsafe_settings(production_env(tmp_path, **{name: value}))
    assert len(problems) == 1 and needle in problems[0]


def test_sender_email_alone_is_a_sender_address(tmp_path) -> None:
    assert unsafe_settings(production_env(tmp_path, DKIM_DOMAIN=None, SENDER_EMAIL="news@example.com")) == []


@pytest.mark.parametrize("flag", ["RAPPORT_ALLOW_INSECURE", "RAPPORT_DEMO"])
def test_local_trials_and_the_demo_are_exempt(tmp_path, flag) -> None:
    env = production_env(tmp_path, SECRET_KEY=None, BASE_URL=None, **{flag: "1"})
    settings = load_settings(env)
    assert settings.base_url.startswith("http://127.0.0.1")
    assert (tmp_path / "instance" / "secret_key").exists()   # the trial's generated key, under its instance


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_init_worker_and_web_refuse_with_the_list(tmp_path) -> None:
    env = production_env(tmp_path, SECRET_KEY=None, BASE_URL="http://mail.example.com")
    for args, prog in ((["-m", "campaigns", "init"], "rapport init"), (["-m", "campaigns", "web"], "rapport web"),
                       (["-m", "worker", "--burst"], "rapport-worker")):
        done = run(args, env, tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith(f"{prog}: Rapport refuses to start with this configuration:")
        assert "SECRET_KEY is not set" in done.stderr and "BASE_URL must be a public https://" in done.stderr
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "instance").exists()
    # gunicorn's entry point (`campaigns.web.app:create_app()`, or wsgi.py) refuses the same way.
    done = run(["-c", "from campaigns.web.app import create_app; create_app()"], env, tmp_path)
    assert done.returncode == 1 and "UnsafeConfigError" in done.stderr and "SECRET_KEY is not set" in done.stderr


def test_check_reports_problems_and_fitness(tmp_path) -> None:
    bad = run(["-m", "campaigns", "check", "--config"], production_env(tmp_path, POSTAL_ADDRESS=None), tmp_path)
    assert bad.returncode == 1 and "configuration: POSTAL_ADDRESS is not set" in bad.stdout
    good = run(["-m", "campaigns", "check", "--config"], production_env(tmp_path), tmp_path)
    assert good.returncode == 0 and "configuration: fit for production" in good.stdout


def test_instance_defaults_to_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = from_env({"SECRET_KEY": "k" * 32})
    assert settings.instance_path == tmp_path / "instance"
    assert settings.database_url == f"sqlite:///{tmp_path / 'instance' / 'rapport.db'}"


def test_https_pages_carry_hsts(client) -> None:
    response = client.get("/admin/login")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_http_pages_do_not(runtime) -> None:
    app = create_app({"SETTINGS": runtime.settings.with_overrides({"base_url": "http://127.0.0.1:5000"})})
    app.extensions["rapport"] = runtime
    response = app.test_client().get("/admin/login")
    assert response.status_code == 200 and "Strict-Transport-Security" not in response.headers
