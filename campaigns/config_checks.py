"""The production checks: a real process (init, web, worker) refuses settings that would leak secrets, break
recipient links or mislabel mail, listing every problem at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from campaigns.config import MIN_SECRET_BYTES, ConfigError, Settings, from_env, insecure_allowed


class UnsafeConfigError(ConfigError):
    """Production settings that would leak, break links or mislabel mail; lists every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "Rapport refuses to start with this configuration:\n" + "".join(f"  - {p}\n" for p in problems)
            + "Set these variables (docs/operations.md), or RAPPORT_ALLOW_INSECURE=1 for a local trial.")


def unsafe_settings(env: Mapping[str, str]) -> list[str]:
    """Every reason the environment is unfit for production (empty when it is fit)."""
    problems = []
    key = env.get("SECRET_KEY", "")
    if not key:
        problems.append(f"SECRET_KEY is not set: give every machine the same random key of at least {MIN_SECRET_BYTES}"
                        " bytes, e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    elif len(key.encode()) < MIN_SECRET_BYTES:
        problems.append(f"SECRET_KEY is {len(key.encode())} bytes long; it must have at least {MIN_SECRET_BYTES}")
    base_url = env.get("BASE_URL", "")
    if not base_url:
        problems.append("BASE_URL is not set: every recipient link would point at http://127.0.0.1; set the public "
                        "https:// address of the web app")
    elif urlsplit(base_url).scheme != "https" or not urlsplit(base_url).hostname:
        problems.append(f"BASE_URL must be a public https:// address, got {base_url!r}")
    if not env.get("POSTAL_ADDRESS", "").strip():
        problems.append("POSTAL_ADDRESS is not set: the sender's postal address shown in every footer")
    if not env.get("SENDER_NAME", "").strip():
        problems.append("SENDER_NAME is not set: the name your mail comes from")
    if not (env.get("SENDER_EMAIL", "").strip() or env.get("DKIM_DOMAIN", "").strip()):
        problems.append("SENDER_EMAIL (or DKIM_DOMAIN, for news@DKIM_DOMAIN) is not set: the address your mail "
                        "comes from")
    return problems


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment for a real process (init, web, worker): refuses an unsafe configuration."""
    env = os.environ if env is None else env
    if not insecure_allowed(env):
        problems = unsafe_settings(env)
        if problems:   # checked before from_env, which would generate a local secret key
            raise UnsafeConfigError(problems)
    return from_env(env)
