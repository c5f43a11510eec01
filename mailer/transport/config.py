"""Relay settings: :class:`RelayConfig` and its URL form (``smtp+starttls://user:pass@host:587/?max_connections=8``),
checked when built so a typo fails at start-up and not at the first send.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_RELAY = "default"
SECURITY_MODES = ("none", "starttls", "ssl")

# URL scheme -> (security, default port).
_SCHEMES = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("ssl", 465)}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class RelayConfig:
    """Where and how to connect to one SMTP relay."""

    name: str
    host: str
    port: int
    security: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    max_connections: int = 4
    rate_per_second: float | None = None
    rate_per_hour: int | None = None
    local_hostname: str | None = None
    verify_tls: bool = True

    def __post_init__(self) -> None:
        """Reject settings that could only fail later, far from where they were written."""
        if self.security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}, not {self.security!r}")
        if not self.host:
            raise ValueError("relay host must not be empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"relay port must be an integer from 1 to 65535, not {self.port!r}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if isinstance(self.max_connections, bool) or self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections!r}")
        if self.rate_per_second is not None and not (
            math.isfinite(self.rate_per_second) and self.rate_per_second > 0
        ):
            raise ValueError(f"rate_per_second must be positive, not {self.rate_per_second!r}")
        if self.rate_per_hour is not None and self.rate_per_hour < 1:
            raise ValueError(f"rate_per_hour must be positive, not {self.rate_per_hour!r}")
        if self.password is not None and not self.username:
            raise ValueError("a relay password needs a username")

    @classmethod
    def from_url(cls, url: str, name: str = "default", *, default_hostname: str | None = None) -> RelayConfig:
        """Parse smtp://, smtp+starttls:// or smtps://[user[:pass]@]host[:port][?option=value...].

        default_hostname: the EHLO name when the URL sets no local_hostname (the sending domain, typically).
        """
        try:
            parts = urlsplit(url.strip())
        except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
            raise ValueError(f"relay {name!r}: malformed URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(
                f"relay {name!r}: unsupported URL scheme {parts.scheme!r}; "
                "use smtp://, smtp+starttls:// or smtps://"
            )
        security, default_port = _SCHEMES[scheme]
        if not parts.hostname:
            raise ValueError(f"relay {name!r}: URL has no host")
        try:
            port = parts.port
        except ValueError:
            # Error text only shows the part after '@' so a password never ends up in logs.
            hostport = parts.netloc.rpartition("@")[2]
            raise ValueError(f"relay {name!r}: invalid port in {hostport!r}") from None
        if port is None:
            port = default_port
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError(f"relay {name!r}: URL must not have a path or fragment")
        options: dict[str, Any] = {}
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueError(f"relay {name!r}: malformed query string {parts.query!r}") from None
        for key, value in query:
            options[key] = _parse_option(name, key, value)
        if not options.get("local_hostname") and default_hostname:
            options["local_hostname"] = default_hostname
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        try:
            return cls(
                name=name,
                host=parts.hostname,
                port=port,
                security=security,
                username=username,
                password=password,
                **options,
            )
        except ValueError as exc:
            raise ValueError(f"relay {name!r}: {exc}") from None


def _parse_option(relay: str, key: str, value: str) -> Any:
    """Convert one from_url query parameter to its RelayConfig field type."""
    try:
        if key in ("max_connections", "rate_per_hour"):
            return int(value)
        if key in ("rate_per_second", "timeout"):
            return float(value)
        if key == "verify_tls":
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError
        if key == "local_hostname":
            return value or None
    except ValueError:
        raise ValueError(f"relay {relay!r}: invalid value {value!r} for {key}") from None
    raise ValueError(
        f"relay {relay!r}: unknown URL parameter {key!r}; known: max_connections, rate_per_second, "
        "rate_per_hour, verify_tls, timeout, local_hostname"
    )
