"""Run-time settings kept in the database: postal address, retry schedule, sender identities; SMTP relay tests.

Values changed in the admin live in the app_setting table and override the environment defaults of
campaigns.config.Settings. DKIM keys: campaigns.accounts.dkim_keys.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.accounts.alignment import check_from
from campaigns.addresses import normalize_email
from campaigns.config import ConfigError, Settings, parse_delays
from campaigns.errors import NotFound, ValidationError
from campaigns.models import AppSetting, Contact, Sender
from mailer.dkim import DKIMSigner
from mailer.transport import DeliveryError, RelayConfig, SMTPPool

logger = logging.getLogger(__name__)

POSTAL = "postal_address"
TEST_TIMEOUT = 15.0         # seconds a relay test may wait for the relay


# ---------------------------------------------------------------- the table

def get_value(session: Session, key: str, default: Any = None) -> Any:
    """A setting changed in the admin, or default."""
    row = session.get(AppSetting, key)
    return default if row is None else row.value


def set_value(session: Session, key: str, value: Any, by: str) -> None:
    """Store a setting (None removes it, so the environment default applies again); caller commits."""
    row = session.get(AppSetting, key)
    if value is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        session.add(AppSetting(key=key, value=value, updated_by=by[:320]))
    else:
        row.value, row.updated_by = value, by[:320]


# ---------------------------------------------------------------- postal address

def postal_address(session: Session, settings: Settings) -> str:
    """The postal address every footer shows: the one saved in the admin, else POSTAL_ADDRESS."""
    return get_value(session, POSTAL) or settings.postal_address


def save_postal_address(session: Session, text: str, by: str) -> str:
    """Save the postal address (blank: back to the POSTAL_ADDRESS default); returns what is stored."""
    lines = [line.strip() for line in (text or "").replace("\r", "").split("\n")]
    value = ", ".join(line for line in lines if line)
    if len(value) > 500:
        raise ValidationError("The postal address is too long (at most 500 characters).", field="postal_address")
    if value and (len(value) < 10 or not any(ch.isdigit() for ch in value)):
        raise ValidationError("Give a full postal address with street, number, postal code and city — the law "
                              "requires a real one in marketing mail.", field="postal_address")
    set_value(session, POSTAL, value or None, by)
    return value


# ---------------------------------------------------------------- retries of temporary failures

RETRY = "retry_schedule"   # {"delays": [seconds…], "max_age": seconds}


@dataclass(frozen=True)
class RetrySchedule:
    """When a send the relay deferred (4xx) is tried again, and for how long at most."""

    delays: tuple[int, ...]
    max_age: int

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1


def default_retry_schedule(settings: Settings) -> RetrySchedule:
    """RAPPORT_RETRY_DELAYS / RAPPORT_RETRY_MAX_AGE (or their defaults): the schedule when none is saved."""
    # Settings.max_attempts may be lower than the delays allow (tests, an operator's choice): it still bounds.
    return RetrySchedule(settings.retry_delays[:max(1, settings.max_attempts - 1)], settings.retry_max_age)


def retry_schedule(session: Session, settings: Settings) -> RetrySchedule:
    """The schedule saved in the admin, else the environment's (default_retry_schedule)."""
    stored = get_value(session, RETRY) or {}
    default = default_retry_schedule(settings)
    delays = tuple(int(d) for d in stored.get("delays") or ()) or default.delays
    return RetrySchedule(delays, int(stored.get("max_age") or default.max_age))


def save_retry_schedule(session: Session, delays_text: str, max_age_hours: str, by: str) -> RetrySchedule | None:
    """Save the retry schedule from the form (both blank: back to the environment defaults); caller commits."""
    delays_text, max_age_hours = (delays_text or "").strip(), (max_age_hours or "").strip()
    if not delays_text and not max_age_hours:
        set_value(session, RETRY, None, by)
        return None
    try:
        delays = parse_delays(delays_text, "The retry delays")
    except ConfigError as exc:
        raise ValidationError(str(exc), field="delays") from None
    if len(delays) > 20 or max(delays) > 7 * 86400:
        raise ValidationError("At most 20 retries, each at most 7 days (604800 seconds) after the one before.",
                              field="delays")
    try:
        hours = float(max_age_hours)
    except ValueError:
        raise ValidationError("Give the longest retry period in hours, e.g. 24.", field="max_age") from None
    if not 0.1 <= hours <= 24 * 14:
        raise ValidationError("The longest retry period must be between 0.1 hours and 14 days.", field="max_age")
    schedule = RetrySchedule(delays, int(hours * 3600))
    set_value(session, RETRY, {"delays": list(delays), "max_age": schedule.max_age}, by)
    return schedule


# ---------------------------------------------------------------- sender identities

def list_senders(session: Session) -> list[tuple[Sender, int]]:
    """Every sender identity with the number of contacts it owns."""
    rows = session.execute(select(Sender, func.count(Contact.id)).outerjoin(Contact, Contact.owner_id == Sender.id)
                           .group_by(Sender.id).order_by(Sender.name, Sender.id)).all()
    return [(sender, count) for sender, count in rows]


def get_sender(session: Session, sender_id: int) -> Sender:
    """One sender identity or NotFound."""
    sender = session.get(Sender, sender_id)
    if sender is None:
        raise NotFound("There is no such sender.")
    return sender


def save_sender(session: Session, form: Mapping[str, str], sender: Sender | None = None, *,
                settings: Settings) -> Sender:
    """Create or change a sender identity from form fields name, email, reply_to, title, allow_unaligned
    (caller commits); an address DKIM does not align with is refused unless allow_unaligned is set."""
    name = (form.get("name") or "").strip()
    if not name:
        raise ValidationError("A sender needs a name: it is what recipients see in the From line.", field="name")
    if len(name) > 200 or any(ch in name for ch in "\r\n<>\""):
        raise ValidationError("The name may not contain line breaks, <, > or quotes, and at most 200 characters.",
                              field="name")
    email = _own_address(form.get("email") or "", "email")
    reply_to = _own_address(form.get("reply_to") or "", "reply_to") if (form.get("reply_to") or "").strip() else None
    title = (form.get("title") or "").strip()[:200] or None
    allow_unaligned = bool(form.get("allow_unaligned"))
    check_from(email, settings, override=allow_unaligned, field_name="email")
    clash = session.scalar(select(Sender.id).where(Sender.email == email))
    if clash is not None and (sender is None or clash != sender.id):
        raise ValidationError(f"There is already a sender with the address {email}.", field="email")
    if sender is None:
        sender = Sender(name=name, email=email)
        session.add(sender)
    sender.name, sender.email, sender.reply_to, sender.title = name, email, reply_to, title
    sender.allow_unaligned = allow_unaligned
    session.flush()
    return sender


def delete_sender(session: Session, sender_id: int) -> str:
    """Delete a sender identity; contacts it owned keep no owner (caller commits). Returns its name."""
    sender = get_sender(session, sender_id)
    name = sender.name
    session.delete(sender)
    return name


def _own_address(raw: str, field: str) -> str:
    try:
        return normalize_email(raw, own_address=True)
    except ValidationError as exc:
        raise ValidationError(str(exc), field=field) from None


# ---------------------------------------------------------------- SMTP relays

@dataclass(frozen=True)
class RelayInfo:
    """A configured relay as the settings page shows it (never the password)."""

    name: str
    host: str
    port: int
    security: str
    username: str
    limits: str
    error: str = ""


def relays(settings: Settings) -> list[RelayInfo]:
    """The relays from SMTP_URL (or the capture server), first one the default."""
    out = []
    for name, url in settings.relays:
        try:
            cfg = RelayConfig.from_url(url, name=name)
        except ValueError as exc:
            out.append(RelayInfo(name, "", 0, "", "", "", error=str(exc)))
            continue
        limits = ", ".join(p for p in (f"{cfg.rate_per_second:g}/s" if cfg.rate_per_second else "",
                                       f"{cfg.rate_per_hour:,}/h" if cfg.rate_per_hour else "",
                                       f"{cfg.max_connections} connections") if p)
        out.append(RelayInfo(name, cfg.host, cfg.port, {"ssl": "TLS", "starttls": "STARTTLS"}.get(cfg.security,
                             "none"), cfg.username or "", limits))
    return out


@dataclass(frozen=True)
class TestOutcome:
    """What the relay answered to a test message."""

    ok: bool
    summary: str
    detail: str
    seconds: float


def send_relay_test(settings: Settings, signer: DKIMSigner | None, relay_name: str, to: str,
                    from_email: str, by: str) -> TestOutcome:
    """Send one real, DKIM-signed message through a relay on a fresh connection and report its SMTP reply."""
    urls = dict(settings.relays)
    if relay_name not in urls:
        raise ValidationError(f"There is no relay called {relay_name!r}.", field="relay")
    try:
        recipient = normalize_email(to, own_address=True)
    except ValidationError as exc:
        raise ValidationError(str(exc), field="to") from None
    msg = EmailMessage()
    msg["From"] = f"{settings.sender_name} <{from_email}>"
    msg["To"] = recipient
    msg["Subject"] = f"Rapport relay test: {relay_name}"
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=settings.dkim_domain)
    msg.set_content(f"This is a test message sent through the SMTP relay '{relay_name}' from Rapport's settings "
                    f"page by {by}.\n\nIf you can read it, the relay accepted and delivered it.\n")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if signer is not None:
        raw = signer.sign_message(raw)
    started = time.monotonic()
    try:
        relay = RelayConfig.from_url(urls[relay_name], name=relay_name,
                                      default_hostname=settings.dkim_domain)
    except ValueError as exc:
        return TestOutcome(False, "The relay URL is not valid.", str(exc), 0.0)
    # The admin waits for the answer: an unreachable relay should not hold the page for the usual 30 s.
    relay = replace(relay, timeout=min(relay.timeout, TEST_TIMEOUT))
    pool = SMTPPool(relay)     # a fresh connection, outside the workers' pools and rate limits
    try:
        result = pool.send(f"bounces@{settings.return_domain}", [recipient], raw)
    except DeliveryError as exc:
        if exc.relay_problem:
            summary = "The relay did not accept our connection or login."
        elif exc.permanent:
            summary = "The relay refused the message."
        else:
            summary = "Sending failed for now (temporary error)."
        return TestOutcome(False, summary, str(exc), time.monotonic() - started)
    finally:
        pool.close()
    detail = f"{result.smtp_code} {result.smtp_message}"
    if result.refused:
        return TestOutcome(False, "The relay refused the recipient.",
                           "; ".join(f"{k}: {c} {m}" for k, (c, m) in result.refused.items()),
                           time.monotonic() - started)
    return TestOutcome(True, f"Accepted by {relay.host}:{relay.port} for {recipient}.", detail,
                       time.monotonic() - started)
