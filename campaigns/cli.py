"""The `rapport` command (also `python -m campaigns`): init, create-admin, dkim-record, web, check, demo, feedback,
check-mail-setup."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from campaigns import check as liveness_check
from campaigns.accounts import mail_setup
from campaigns.accounts.dkim_keys import dkim_overview, ensure_dkim_key, zone_record
from campaigns.accounts.users import check_password_rules, hash_password
from campaigns.addresses import normalize_email
from campaigns.config import ConfigError, Settings, from_env
from campaigns.config_checks import load_settings, unsafe_settings
from campaigns.db import make_engine, make_session_factory, session_scope
from campaigns.demo import data as demo_data
from campaigns.demo import runner as demo_runner
from campaigns.errors import ValidationError
from campaigns.feedback import cli as feedback_cli
from campaigns.models import AdminRole, AdminUser
from campaigns.resources import migrate
from mailer.dkim import DKIMKey

logger = logging.getLogger(__name__)


def dkim_record(settings: Settings) -> str:
    """The DNS TXT records to publish for the DKIM keys that sign (chosen in the admin, else configured)."""
    engine = make_engine(settings.database_url, immediate=False)
    try:
        with make_session_factory(engine)() as session:
            keys, pending = dkim_overview(session, settings)
    except SQLAlchemyError:          # no database yet: the configured key
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


# Commands that run the product for real: they refuse an unsafe configuration (campaigns.config_checks.load_settings).
GUARDED = frozenset({"init", "web"})


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
    p_ingest = command("ingest", help="apply one bounce/complaint/unsubscribe/reply message from stdin")
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
        return liveness_check.check(from_env()) or status
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
        migrate(settings)
        print("Seeded." if demo_data.seed(settings) else "The database already has data; nothing seeded.")
    elif args.command == "dkim-record":
        print(dkim_record(settings))
    elif args.command == "create-admin":
        password = args.password or os.environ.get("RAPPORT_ADMIN_PASSWORD") or getpass.getpass("Password: ")
        create_admin(settings, args.email, args.name, password, args.role)
        print(f"Admin {args.email} is ready.")
    elif args.command in ("ingest", "poll-bounces", "drain-hits"):
        return feedback_cli.run(settings, args)
    elif args.command == "check-mail-setup":
        return mail_setup.run(settings, pipe=args.pipe, smtp=args.smtp, dns=not args.no_dns)
    elif args.command == "demo":
        if "BASE_URL" not in os.environ:
            settings = settings.with_overrides({"base_url": f"http://127.0.0.1:{args.port}"})
        if not os.environ.get("SENDER_NAME"):        # the demo data's shop, not the product's placeholder name
            settings = settings.with_overrides({"sender_name": demo_data.DEMO_BUSINESS})
        if not os.environ.get("POSTAL_ADDRESS"):
            settings = settings.with_overrides({"postal_address": demo_data.DEMO_POSTAL_ADDRESS})
        return demo_runner.run(settings, args.port)
    return 0
