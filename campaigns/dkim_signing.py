"""Which DKIM keys sign, and the signer built from them: the keys activated in the admin (the app_setting row
"dkim", written by campaigns.accounts.dkim_keys), else the configured ones (DKIM_PRIVATE_KEY_PATH,
DKIM_ED25519_KEY_PATH).

The foundation owns this reading side because every Runtime signs (campaigns.runtime) and must not depend on the
accounts capability; generating, activating and publishing keys stays in campaigns.accounts.dkim_keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from campaigns.config import Settings
from mailer.dkim import DKIMKey, DKIMSigner

logger = logging.getLogger(__name__)

DKIM = "dkim"       # the app_setting key: {"active": [entry…], "pending": entry | None}


def key_path(settings: Settings, entry: Mapping[str, str]) -> Path:
    """The key file of a setting entry (relative paths are under the instance folder)."""
    path = Path(entry["path"])
    if not path.is_absolute():
        path = Path(settings.instance_path) / path
    return path


def load_key(settings: Settings, entry: Mapping[str, str]) -> DKIMKey | None:
    """The key an entry names, or None (logged) when its file is missing or not a usable key."""
    path = key_path(settings, entry)
    try:
        return DKIMKey.from_pem(settings.dkim_domain, entry["selector"], path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("DKIM key %s (%s) cannot be used: %s", entry["selector"], path, exc)
        return None


def env_entries(settings: Settings) -> list[dict[str, str]]:
    """The configured keys, as setting entries."""
    out = []
    if settings.dkim_private_key_path and Path(settings.dkim_private_key_path).exists():
        out.append({"selector": settings.dkim_selector, "path": str(settings.dkim_private_key_path)})
    if settings.dkim_ed25519_selector and settings.dkim_ed25519_key_path:
        out.append({"selector": settings.dkim_ed25519_selector, "path": str(settings.dkim_ed25519_key_path)})
    return out


def state_of(value: Any, settings: Settings) -> tuple[list[dict[str, str]], dict[str, str] | None, str]:
    """(active entries, pending entry, where the active ones come from) for the stored setting value."""
    state = value or {}
    if state.get("active"):
        return list(state["active"]), state.get("pending"), "admin"
    return env_entries(settings), state.get("pending"), "environment"


def build_signer(settings: Settings, active: list[dict[str, str]]) -> DKIMSigner | None:
    """A signer for every usable active key, or None (mail goes out unsigned, with a warning)."""
    keys = [key for entry in active if (key := load_key(settings, entry)) is not None]
    if not keys:
        logger.warning("no usable DKIM key: mail goes out unsigned")
        return None
    return DKIMSigner(keys)


def signer_for_runtime(engine: Engine, settings: Settings, known: tuple | None,
                       current: DKIMSigner | None) -> tuple[tuple | None, DKIMSigner | None]:
    """(fingerprint, signer) for a Runtime: rebuilt only when the active keys changed.

    Reads the setting on a raw connection without a transaction: on SQLite an ORM session would BEGIN IMMEDIATE
    and wait for the write lock that the calling batch may hold itself. Without a readable table (not migrated
    yet) the configured keys sign.
    """
    try:
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            mark = "%s" if engine.dialect.name == "postgresql" else "?"
            cursor.execute(f"SELECT value FROM app_setting WHERE key = {mark}", (DKIM,))
            row = cursor.fetchone()
            cursor.close()
        finally:
            conn.close()
        value = row[0] if row else None
        if isinstance(value, str):
            value = json.loads(value)
    except Exception as exc:
        if known is not None:
            logger.warning("cannot re-read the DKIM settings (%s); keeping the current keys", exc)
            return known, current
        logger.debug("DKIM settings unavailable (%s); using the configured key", exc)
        value = None
    active, _pending, _source = state_of(value, settings)
    fingerprint = tuple((e["selector"], e["path"]) for e in active)
    if fingerprint == known:
        return known, current
    return fingerprint, build_signer(settings, active)
