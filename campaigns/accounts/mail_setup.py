"""`rapport check-mail-setup`: are the bounce domain's DNS records and the MTA's pipe into `rapport ingest` right?

The pipe check sends a probe message — sealed with the secret key, so only a pipe with the right settings can
accept it — and reads back, from the database, the mark `ingest` leaves for it: that proves the pipe runs, loads
the settings (from the environment the MTA leaves it, which is almost none), reads the key and writes the database.
See docs/bounces.md.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shlex
import smtplib
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid

from sqlalchemy.orm import Session

from campaigns.accounts import alignment
from campaigns.accounts.alignment import RecordCheck
from campaigns.accounts.dkim_keys import dkim_overview, resolve_txt
from campaigns.accounts.settings_store import get_value, set_value
from campaigns.config import Settings
from campaigns.runtime import Runtime
from mailer.tracking import InvalidToken, Purpose, TokenCodec

PROBE_HEADER = "X-Rapport-Probe"
PROBE_SETTING = "mail_setup_probe"
PROBE_WAIT = 30.0          # seconds an MTA may take to hand the probe to the pipe
# What a Postfix pipe(8) or Exim pipe transport leaves of the environment: a PATH and little else.
PIPE_ENV = {"PATH": "/usr/bin:/bin"}


class Resolver:
    """DNS lookups through the system's resolver (tests pass an object with the same two methods)."""

    def txt(self, name: str) -> list[str]:
        """TXT strings at name (raises when there are none)."""
        return resolve_txt(name)

    def mx(self, name: str) -> list[str]:
        """MX targets of name, most preferred first (raises when there are none)."""
        import dns.resolver  # deferred like in dkim_keys.resolve_txt: only DNS checks need dnspython

        resolver = dns.resolver.Resolver()
        resolver.lifetime = 4.0
        answer = sorted(resolver.resolve(name, "MX"), key=lambda r: r.preference)
        return [str(r.exchange).rstrip(".") for r in answer]


# ---------------------------------------------------------------- DNS


def _mx(domain: str, resolver: Resolver) -> RecordCheck:
    try:
        hosts = tuple(resolver.mx(domain))
    except Exception:
        hosts = ()
    if not hosts or hosts == ("",):   # "" is the null MX (RFC 7505): the domain takes no mail at all
        return RecordCheck("MX", domain, hosts, False,
                           "No MX record: bounces, complaints and mailto unsubscribes cannot reach Rapport.",
                           f"{domain}. IN MX 10 mail.{domain}.")
    return RecordCheck("MX", domain, hosts, True, f"Mail for the bounce domain goes to {hosts[0]}.")


def dns_checks(settings: Settings, dkim_records: Sequence[tuple[str, str]], resolver: Resolver) -> list[RecordCheck]:
    """MX of the bounce domain, then SPF, DKIM and DMARC of the sending domains (campaigns.accounts.alignment)."""
    checks = [_mx(settings.return_domain, resolver)]
    domains = [alignment.domain_of(settings.sender_email)]
    for report in alignment.domain_reports(domains, settings, dkim_records, resolver.txt):
        checks.extend(report.checks)
    return checks


# ---------------------------------------------------------------- the probe


def probe_message(settings: Settings, tokens: TokenCodec, nonce: str) -> bytes:
    """A message to the bounce domain that `rapport ingest` recognises as this check's probe."""
    msg = EmailMessage()
    msg["From"] = settings.sender_email
    msg["To"] = f"bounces+probe@{settings.return_domain}"
    msg["Subject"] = "Rapport mail setup probe"
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=settings.return_domain)
    msg[PROBE_HEADER] = f"{nonce} {tokens.seal(Purpose.MESSAGE, 0)}"
    msg.set_content("This message tests the route from the bounce domain into Rapport. It changes nothing.\n")
    return msg.as_bytes()


def probe_nonce(tokens: TokenCodec, raw: bytes) -> str | None:
    """The nonce of a genuine probe (its token opens with this key), else None: ordinary mail goes on as usual."""
    if PROBE_HEADER.lower().encode() not in raw[:65536].lower():
        return None
    value = BytesHeaderParser().parsebytes(raw[:65536]).get(PROBE_HEADER, "")
    nonce, _sep, token = str(value).strip().partition(" ")
    try:
        if tokens.open(Purpose.MESSAGE, token.strip()) != (0,):   # send 0 never exists: only probes carry it
            return None
    except InvalidToken:
        return None
    return nonce[:64] or None


def record_probe(session: Session, nonce: str) -> None:
    """Leave the mark check-mail-setup waits for (caller commits)."""
    set_value(session, PROBE_SETTING, {"nonce": nonce, "at": dt.datetime.now(dt.UTC).isoformat()}, "ingest")


def _probe_arrived(session_factory: Callable[[], Session], nonce: str) -> bool:
    with session_factory() as session:
        return (get_value(session, PROBE_SETTING) or {}).get("nonce") == nonce


@dataclass(frozen=True)
class PipeCheck:
    """The outcome of sending the probe down one route."""

    ok: bool
    note: str


def check_pipe(command: Sequence[str], settings: Settings, tokens: TokenCodec,
               session_factory: Callable[[], Session], *, env: dict[str, str] | None = None) -> PipeCheck:
    """Run the MTA's pipe command as the MTA would (probe on stdin, a bare environment) and look for its mark."""
    nonce = secrets.token_hex(8)
    try:
        done = subprocess.run(list(command), input=probe_message(settings, tokens, nonce), capture_output=True,
                              env=PIPE_ENV if env is None else env, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return PipeCheck(False, f"the pipe command could not run: {exc}")
    output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()[-600:]
    if done.returncode != 0:
        hint = " (75: temporary failure, the MTA would retry)" if done.returncode == 75 else ""
        return PipeCheck(False, f"the pipe command exited with {done.returncode}{hint}: {output}")
    if not _probe_arrived(session_factory, nonce):
        return PipeCheck(False, "the pipe command ran but the probe is not in this database: it reads other "
                                f"settings (another DATABASE_URL or SECRET_KEY?). It said: {output}")
    return PipeCheck(True, "the pipe command accepted the probe and wrote it to the database")


def check_smtp(host: str, port: int, settings: Settings, tokens: TokenCodec,
               session_factory: Callable[[], Session], *, wait: float = PROBE_WAIT) -> PipeCheck:
    """Deliver the probe to bounces+probe@BOUNCE_DOMAIN through the MTA at host:port and wait for its mark."""
    nonce = secrets.token_hex(8)
    rcpt = f"bounces+probe@{settings.return_domain}"
    try:
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.sendmail("", [rcpt], probe_message(settings, tokens, nonce))   # null sender, like a DSN
    except (OSError, smtplib.SMTPException) as exc:
        return PipeCheck(False, f"{host}:{port} did not accept mail for {rcpt}: {exc}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _probe_arrived(session_factory, nonce):
            return PipeCheck(True, f"{host}:{port} accepted the probe and delivered it into Rapport")
        time.sleep(0.5)
    return PipeCheck(False, f"{host}:{port} accepted the probe but it did not reach Rapport within {wait:.0f} s: "
                            "look in the MTA's log (a deferred pipe, a double bounce)")


def run(settings: Settings, *, pipe: str = "", smtp: str = "", dns: bool = True,
        resolver: Resolver | None = None) -> int:
    """Print every check with what to fix; 0 when all pass, 1 otherwise."""
    rt = Runtime(settings)
    failed = 0
    try:
        if dns:
            with rt.session_factory() as session:
                keys, _pending = dkim_overview(session, settings)
            for check in dns_checks(settings, [(k.record_name, k.txt_value) for k in keys], resolver or Resolver()):
                failed += not check.ok
                found = "; ".join(check.found) or "nothing"
                print(f"{'ok  ' if check.ok else 'FAIL'} {check.kind:<5} {check.name}: {check.note} (found: {found})")
                if check.publish:
                    print(f"     publish: {check.publish}")
        routes = []
        if pipe:
            routes.append(("pipe", lambda: check_pipe(shlex.split(pipe), settings, rt.tokens, rt.session_factory)))
        if smtp:
            host, _sep, port = smtp.rpartition(":") if ":" in smtp else (smtp, "", "25")
            routes.append(("smtp", lambda: check_smtp(host, int(port), settings, rt.tokens, rt.session_factory)))
        for name, check_route in routes:
            outcome = check_route()
            failed += not outcome.ok
            print(f"{'ok  ' if outcome.ok else 'FAIL'} {name:<5} {outcome.note}")
        if not routes:
            print("note  give --pipe COMMAND (the MTA's pipe) and/or --smtp HOST[:PORT] (the bounce domain's MX) "
                  "to test the route into `rapport ingest` end to end")
    finally:
        rt.close()
    return 1 if failed else 0
