"""The `rapport` command (also `python -m campaigns`): init, create-admin, dkim-record, web, check, demo, feedback,
check-mail-setup."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import select

from campaigns.config import ConfigError, Settings, from_env, load_settings, unsafe_settings

logger = logging.getLogger(__name__)


def migrate(settings: Settings) -> None:
    """Bring the database to the newest schema (alembic upgrade head)."""
    from alembic import command

    from campaigns.resources import alembic_config

    cfg = alembic_config(settings.database_url)
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(cfg, "head")


def ensure_dkim_key(settings: Settings) -> Path | None:
    """Generate an RSA-2048 DKIM key under instance/ when none exists; print nothing if it does."""
    from mailer.dkim import DKIMKey, generate_private_key_pem

    path = settings.dkim_private_key_path
    if path is None:
        return None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(generate_private_key_pem("rsa", 2048))
        from campaigns.accounts.dkim_keys import zone_record

        key = DKIMKey.from_pem(settings.dkim_domain, settings.dkim_selector, path.read_bytes())
        (path.parent / f"{settings.dkim_selector}.dns.txt").write_text(zone_record(key) + "\n")
        print(f"Generated a DKIM key: {path}")
    return path


def dkim_record(settings: Settings) -> str:
    """The DNS TXT records to publish for the DKIM keys that sign (chosen in the admin, else configured)."""
    from sqlalchemy.exc import SQLAlchemyError

    from campaigns.accounts.dkim_keys import dkim_overview
    from campaigns.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url, immediate=False)
    try:
        with make_session_factory(engine)() as session:
            keys, pending = dkim_overview(session, settings)
    except SQLAlchemyError:          # no database yet: the configured key
        from campaigns.accounts.dkim_keys import zone_record
        from mailer.dkim import DKIMKey

        if settings.dkim_private_key_path is None or not settings.dkim_private_key_path.exists():
            raise SystemExit("no DKIM key yet: run `rapport init`") from None
        return zone_record(DKIMKey.from_pem(settings.dkim_domain, settings.dkim_selector,
                                            settings.dkim_private_key_path.read_bytes()))
    finally:
        engine.dispose()
    if not keys and not pending:
        raise SystemExit("no DKIM key yet: run `rapport init`")
    lines = [k.zone_line for k in keys]
    if pending:
        lines.append(f"; new key, not signing yet — publish it, then activate it in Settings → DKIM:\n"
                     f"{pending.zone_line}")
    return "\n".join(lines)


def create_admin(settings: Settings, email: str, name: str, password: str, role: str = "admin") -> None:
    """Create (or reset the password of) an admin user."""
    from campaigns.accounts.users import check_password_rules, hash_password
    from campaigns.contacts.records import normalize_email
    from campaigns.db import make_engine, make_session_factory, session_scope
    from campaigns.errors import ValidationError
    from campaigns.models import AdminRole, AdminUser

    try:
        email = normalize_email(email, own_address=True)
        check_password_rules(password, email)
    except ValidationError as exc:
        raise SystemExit(str(exc)) from None
    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        user = session.scalar(select(AdminUser).where(AdminUser.email == email))
        if user is None:
            user = AdminUser(email=email, name=name or email.split("@")[0])
            session.add(user)
        user.password_hash = hash_password(password)
        user.role = AdminRole(role)
        user.active = True
    engine.dispose()


def demo(settings: Settings, port: int) -> int:
    """Run the whole product on embedded defaults until Ctrl-C."""
    from campaigns.demo import data as demo_data
    from campaigns.runtime import embedded_redis
    from mailer.capture import CaptureServer, Outbox

    settings.instance_path.mkdir(parents=True, exist_ok=True)
    migrate(settings)
    ensure_dkim_key(settings)
    seeded = demo_data.seed(settings)
    # RAPPORT_DEMO exempts the children from the production checks (an http BASE_URL, a generated key).
    env = dict(os.environ, RAPPORT_INSTANCE=str(settings.instance_path), PORT=str(port),
               BASE_URL=settings.base_url, SECRET_KEY=settings.secret_key, RAPPORT_DEMO="1")
    redis = None
    if not settings.redis_url:
        redis = embedded_redis(settings.instance_path)
        env["REDIS_URL"] = f"unix://{redis.socket_file}"
    capture = None
    if settings.uses_capture:
        capture = CaptureServer(Outbox(settings.outbox_path), port=settings.smtp_capture_port)
        capture.start()

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "worker", "--name", f"demo-{os.getpid()}"], env=env)

    children = [
        start_worker(),
        subprocess.Popen([sys.executable, "-m", "flask", "--app", "campaigns.web.app:create_app()", "run",
                          "--host", "127.0.0.1", "--port", str(port), "--no-reload"], env=env),
    ]
    print("  Starting the web server and the worker…", flush=True)
    if not _wait_until_answering(f"http://127.0.0.1:{port}/admin/login", children):
        for child in children:
            if child.poll() is None:
                child.terminate()
        if capture:
            capture.stop()
        print("  Rapport did not start: see the messages above.", file=sys.stderr)
        return 1
    print(
        "\n  Rapport is running.\n"
        f"  Admin:  {settings.base_url}/admin\n"
        f"  Login:  {demo_data.DEMO_EMAIL} / {demo_data.DEMO_PASSWORD}\n"
        f"  SMTP capture: 127.0.0.1:{settings.smtp_capture_port} -> Outbox page\n"
        f"  {'Seeded demo data.' if seeded else 'Reusing existing data in ' + str(settings.instance_path)}\n"
        + ("  BASE_URL is http:// — allowed for the demo; real campaigns need an https:// BASE_URL.\n"
           if settings.base_url.startswith("http://") else "")
        + "  Press Ctrl-C to stop.\n", flush=True)

    stop = False

    def _stop(_sig, _frame) -> None:  # noqa: ANN001
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = 0
    while not stop:
        worker, web = children
        if worker.poll() is not None and not stop:
            # What a process supervisor does in production (deploy/): the sweeper picks up where it died.
            print(f"  the worker exited with code {worker.returncode}; starting a new one.", file=sys.stderr,
                  flush=True)
            time.sleep(1)
            children[0] = start_worker()
        if web.poll() is not None and not stop:
            print(f"  the web server exited with code {web.returncode}; stopping.", file=sys.stderr)
            stop, code = True, 1
        time.sleep(0.3)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    if capture:
        capture.stop()
    if redis is not None:
        from redis.exceptions import RedisError

        with contextlib.suppress(RedisError):   # the server closes the connection as it stops
            redis.shutdown(save=True)
    print("  Stopped.")
    return code


def web(gunicorn_args: list[str]) -> None:
    """Replace this process with gunicorn serving the app under the shipped settings (campaigns/gunicorn_conf.py)."""
    # exec, not a child: the process supervisor's signals (graceful stop, reload) reach gunicorn itself.
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config", "python:campaigns.gunicorn_conf",
                              *gunicorn_args, "campaigns.web.app:create_app()"])


def check_config(env: Mapping[str, str]) -> int:
    """Print whether the environment is fit for production; 1 when it is not."""
    problems = unsafe_settings(env)
    for problem in problems:
        print(f"configuration: {problem}")
    if not problems:
        print("configuration: fit for production")
    return 1 if problems else 0


# Commands that run the product for real: they refuse an unsafe configuration (campaigns.config.load_settings).
GUARDED = frozenset({"init", "web"})


def _wait_until_answering(url: str, children: list[subprocess.Popen], timeout: float = 120.0) -> bool:
    """Poll url until it answers (any HTTP status); False when a child process exits first or time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True      # an error page is an answer too: the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def load_env_file(path: str, env: dict[str, str] | None = None) -> None:
    """Read KEY=VALUE lines (the systemd EnvironmentFile / `set -a; .` format) into env, os.environ by default.

    For an MTA's pipe, which clears the environment: `rapport --env-file /etc/rapport/rapport.env ingest`.
    The file's values win over inherited ones, so what the file says is what runs.
    """
    env = os.environ if env is None else env   # type: ignore[assignment]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.replace("_", "").isalnum():
            raise ConfigError(f"{path}, line {number}: expected NAME=value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name] = value


def main(argv: list[str] | None = None) -> int:
    # --env-file is accepted before or after the command (`rapport --env-file F ingest`, `rapport ingest --env-file F`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", default=argparse.SUPPRESS, metavar="PATH",
                        help="read settings (NAME=value lines) from this file first, e.g. /etc/rapport/rapport.env")
    parser = argparse.ArgumentParser(prog="rapport", description="Rapport administration", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kw: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    command("init", help="create/upgrade the database and the DKIM key")
    command("web", help="serve the web app with gunicorn; further options go to gunicorn (e.g. --workers 8)")
    p_check = command("check", help="exit 1 unless the configuration is fit for production and the database, "
                             "Redis, a live worker and the scheduler are fine")
    p_check.add_argument("--config", action="store_true", help="check only the configuration (before anything runs)")
    command("seed", help="load demo data into an empty database")
    command("dkim-record", help="print the DNS TXT record for the DKIM key")
    p_admin = command("create-admin", help="create the first admin user (or reset a password)")
    p_admin.add_argument("--email", required=True)
    p_admin.add_argument("--name", default="")
    p_admin.add_argument("--role", default="admin", choices=["admin", "editor", "viewer"])
    p_admin.add_argument("--password", default=None, help="omit to be asked (or set RAPPORT_ADMIN_PASSWORD)")
    p_demo = command("demo", help="run web app, worker, embedded Redis and capture SMTP with demo data")
    p_demo.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    p_ingest = command("ingest", help="apply one bounce/complaint/unsubscribe message from stdin")
    p_ingest.add_argument("--recipient", default=None, help="envelope recipient, e.g. Postfix ${recipient}")
    p_poll = command("poll-bounces", help="apply and delete the messages in a bounce mailbox")
    p_poll.add_argument("url", nargs="?", default="",
                        help="imap[s]://user:pass@host/INBOX or pop3[s]://… (default: $BOUNCE_MAILBOX_URL)")
    command("drain-hits", help="write queued opens and clicks to the database now")
    p_mail = command("check-mail-setup", help="check the bounce domain's DNS records and the route from the "
                            "MTA into `rapport ingest` (docs/bounces.md); exit 1 when something is wrong")
    p_mail.add_argument("--pipe", default="", metavar="COMMAND",
                        help="the MTA's pipe command, run as the MTA runs it, e.g. /usr/local/bin/rapport-ingest")
    p_mail.add_argument("--smtp", default="", metavar="HOST[:PORT]",
                        help="deliver a probe to bounces+probe@BOUNCE_DOMAIN through this MTA and wait for it")
    p_mail.add_argument("--no-dns", action="store_true", help="skip the DNS checks")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "web":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "env_file", None):
        try:
            load_env_file(args.env_file)
        except ConfigError as exc:
            # An MTA keeps the message and retries on 75: a broken settings file must not lose a bounce.
            parser.exit(75 if args.command == "ingest" else 2, f"rapport {args.command}: {exc}\n")
    if args.command == "check":
        status = check_config(os.environ)
        if args.config:
            return status
        from campaigns.check import check

        return check(from_env()) or status
    try:
        settings = load_settings() if args.command in GUARDED else from_env()
    except ConfigError as exc:
        parser.exit(75 if args.command == "ingest" else 2, f"rapport {args.command}: {exc}\n")
    if args.command == "web":
        web(extra)
    elif args.command == "init":
        migrate(settings)
        ensure_dkim_key(settings)
        print("Database is up to date.")
    elif args.command == "seed":
        from campaigns.demo import data as demo_data

        migrate(settings)
        print("Seeded." if demo_data.seed(settings) else "The database already has data; nothing seeded.")
    elif args.command == "dkim-record":
        print(dkim_record(settings))
    elif args.command == "create-admin":
        password = args.password or os.environ.get("RAPPORT_ADMIN_PASSWORD") or getpass.getpass("Password: ")
        create_admin(settings, args.email, args.name, password, args.role)
        print(f"Admin {args.email} is ready.")
    elif args.command in ("ingest", "poll-bounces", "drain-hits"):
        from campaigns.feedback.cli import run

        return run(settings, args)
    elif args.command == "check-mail-setup":
        from campaigns.accounts import mail_setup

        return mail_setup.run(settings, pipe=args.pipe, smtp=args.smtp, dns=not args.no_dns)
    elif args.command == "demo":
        if "BASE_URL" not in os.environ:
            settings = settings.with_overrides({"base_url": f"http://127.0.0.1:{args.port}"})
        return demo(settings, args.port)
    return 0
