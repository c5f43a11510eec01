"""Bounce routing as an MTA runs it: `ingest` with only a settings file, `check-mail-setup` over DNS and the pipe.

The pipe is the shell script docs/bounces.md ships, run with the bare environment Postfix's pipe(8) leaves; the SMTP
route is a real SMTP server on loopback that hands each message to that script, as an MTA's transport does.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from campaigns.accounts import mail_setup
from campaigns.accounts.settings_store import get_value
from campaigns.cli import load_env_file
from campaigns.config import ConfigError
from campaigns.models import Event
from tests.helpers import fresh

ROOT = Path(__file__).resolve().parents[3]
BARE = {"PATH": "/usr/bin:/bin"}     # what Postfix's pipe(8) leaves of the environment


def _env_file(path: Path, settings, **extra: str) -> Path:
    values = {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key,
              "RAPPORT_INSTANCE": str(settings.instance_path), "REDIS_URL": "redis://127.0.0.1:1/0",
              "BOUNCE_DOMAIN": "bounces.shop.test", **extra}
    path.write_text("# Rapport settings\n" + "".join(f"{k}='{v}'\n" for k, v in values.items()))
    return path


def _pipe_script(tmp_path: Path, env_file: Path, name: str = "rapport-ingest") -> Path:
    """/usr/local/bin/rapport-ingest as docs/bounces.md has it (with this test's interpreter)."""
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m campaigns --env-file '
                      f'{shlex.quote(str(env_file))} ingest --recipient "$1"\n')
    script.chmod(0o755)
    return script


def test_env_file_format_and_errors(tmp_path) -> None:
    f = tmp_path / "rapport.env"
    f.write_text('# comment\n\nexport A="x y"\nB=\'z\'\nC=plain=with=equals\n')
    env: dict[str, str] = {"A": "old"}
    load_env_file(str(f), env)
    assert env == {"A": "x y", "B": "z", "C": "plain=with=equals"}
    f.write_text("not a setting\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_env_file(str(f), {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_env_file(str(tmp_path / "missing.env"), {})


def test_ingest_runs_with_only_a_settings_file_in_a_bare_environment(runtime, db_session, tmp_path) -> None:
    env_file = _env_file(tmp_path / "rapport.env", runtime.settings)
    probe = mail_setup.probe_message(runtime.settings, runtime.tokens, "abc123")
    done = subprocess.run([sys.executable, "-m", "campaigns", "ingest", "--env-file", str(env_file)], input=probe,
                          env=BARE, cwd="/", capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "probe"
    assert get_value(fresh(db_session), mail_setup.PROBE_SETTING)["nonce"] == "abc123"
    # A missing settings file is a temporary failure: the MTA keeps the message instead of bouncing it.
    done = subprocess.run([sys.executable, "-m", "campaigns", "--env-file", str(tmp_path / "nope.env"), "ingest"],
                          input=probe, env=BARE, cwd="/", capture_output=True, timeout=60)
    assert done.returncode == 75 and b"cannot read the settings file" in done.stderr


def test_a_probe_sealed_with_another_key_is_not_a_probe(runtime, db_session) -> None:
    from mailer.tracking import TokenCodec

    forged = mail_setup.probe_message(runtime.settings, TokenCodec("another-secret-" + "x" * 40), "zzz")
    from campaigns.feedback import ingest

    assert ingest.ingest_message(db_session, runtime.tokens, forged).kind == "ignored"
    assert get_value(fresh(db_session), mail_setup.PROBE_SETTING) is None
    assert fresh(db_session).scalar(select(Event.id)) is None


def _check(tmp_path: Path, env_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "campaigns", "--env-file", str(env_file), "check-mail-setup",
                           "--no-dns", *args], env=BARE, cwd=str(tmp_path), capture_output=True, timeout=120)


def test_check_mail_setup_runs_the_pipe_end_to_end(runtime, tmp_path) -> None:
    env_file = _env_file(tmp_path / "rapport.env", runtime.settings)
    script = _pipe_script(tmp_path, env_file)
    done = _check(tmp_path, env_file, "--pipe", f"{script} bounces+probe@bounces.shop.test")
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert "ok   pipe" in done.stdout.decode()
    # The pipe reads another secret key than the app: the probe is refused, and the check says so.
    other = _env_file(tmp_path / "other.env", runtime.settings, SECRET_KEY="another-secret-" + "y" * 40)
    done = _check(tmp_path, env_file, "--pipe", str(_pipe_script(tmp_path, other, "other-ingest")))
    assert done.returncode == 1
    assert "FAIL pipe" in done.stdout.decode() and "not in this database" in done.stdout.decode()
    # A pipe that cannot load its settings exits 75, and the check reports it.
    broken = tmp_path / "broken-ingest"
    broken.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m campaigns --env-file /nonexistent ingest\n")
    broken.chmod(0o755)
    done = _check(tmp_path, env_file, "--pipe", str(broken))
    assert done.returncode == 1 and "exited with 75" in done.stdout.decode()


class _PipeTransport:
    """The smallest MTA: accept mail for the bounce domain and hand each message to the pipe command."""

    def __init__(self, command: list[str]) -> None:
        self.command = command

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not address.endswith("@bounces.shop.test"):
            return "550 5.1.2 not a domain of this server"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            done = subprocess.run([*self.command, rcpt], input=envelope.original_content, env=BARE,
                                  capture_output=True, timeout=60)
            if done.returncode:
                return "451 4.3.0 pipe failed"
        return "250 OK delivered to the pipe"


def test_check_mail_setup_delivers_through_the_mta(runtime, tmp_path) -> None:
    env_file = _env_file(tmp_path / "rapport.env", runtime.settings)
    with socket.socket() as probe_port:   # a free port (aiosmtpd's Controller cannot start on port 0)
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    controller = Controller(_PipeTransport([str(_pipe_script(tmp_path, env_file))]), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        done = _check(tmp_path, env_file, "--smtp", f"127.0.0.1:{port}")
    finally:
        controller.stop()
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert "ok   smtp" in done.stdout.decode()


class _Zone:
    """A resolver answering from a dict, as check-mail-setup's DNS lookups see a zone."""

    def __init__(self, txt: dict[str, list[str]], mx: dict[str, list[str]]) -> None:
        self._txt, self._mx = txt, mx

    def txt(self, name: str) -> list[str]:
        return self._txt[name]

    def mx(self, name: str) -> list[str]:
        return self._mx[name]


def test_dns_checks_name_what_is_missing_and_what_to_publish(runtime, capsys) -> None:
    s = runtime.settings.with_overrides({"bounce_domain": "bounces.shop.test"})
    record = ("s2026._domainkey.shop.test", "v=DKIM1; k=rsa; p=MIIBkey")
    empty = _Zone({}, {})
    checks = {c.kind: c for c in mail_setup.dns_checks(s, [record], empty)}
    assert not checks["MX"].ok and checks["MX"].publish == "bounces.shop.test. IN MX 10 mail.bounces.shop.test."
    assert not checks["SPF"].ok and not checks["DKIM"].ok and not checks["DMARC"].ok
    good = _Zone({"bounces.shop.test": ["v=spf1 mx ~all"], "s2026._domainkey.shop.test": ["v=DKIM1; p=MIIBkey"],
                  "_dmarc.shop.test": ["v=DMARC1; p=none"]}, {"bounces.shop.test": ["mail.shop.test"]})
    assert all(c.ok for c in mail_setup.dns_checks(s, [record], good))
    # The command's report, with the resolver injected: the missing MX is named with the line to publish.
    assert mail_setup.run(s, resolver=_Zone(good._txt, {})) == 1
    out = capsys.readouterr().out
    assert "FAIL MX    bounces.shop.test" in out and "publish: bounces.shop.test. IN MX 10" in out
