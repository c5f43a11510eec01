"""DKIM keys chosen in the admin: generate, publish (the exact DNS record), activate (campaigns.dkim_signing
reads the active ones and builds the runtime's signer).

Private keys are files under instance/dkim/ (mode 0600, like the key `python -m campaigns init` creates); the
app_setting row "dkim" only records which of them sign, so a database dump never contains a private key. Until a
key is activated in the admin, the configured one (DKIM_PRIVATE_KEY_PATH, DKIM_ED25519_KEY_PATH) signs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from campaigns.accounts.settings_store import get_value, set_value
from campaigns.config import Settings
from campaigns.dkim_signing import DKIM, key_path, load_key, state_of
from campaigns.errors import ValidationError
from mailer.dkim import DKIMKey, generate_private_key_pem

logger = logging.getLogger(__name__)

KEY_KINDS = ("rsa", "ed25519")
_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class KeyInfo:
    """One DKIM key and what to publish for it."""

    selector: str
    kind: str
    path: Path
    record_name: str
    txt_value: str
    zone_line: str
    source: str          # "admin" (generated in the admin) or "environment" (DKIM_PRIVATE_KEY_PATH…)
    created: str = ""


def zone_record(key: DKIMKey) -> str:
    """The DNS TXT record for a key, in zone-file form; the value split into quoted strings of ≤255 bytes."""
    value = key.dns_txt_value()
    parts = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{key.dns_record_name()}. IN TXT {parts}"


def _info(settings: Settings, entry: Mapping[str, str], source: str) -> KeyInfo | None:
    key = load_key(settings, entry)
    if key is None:
        return None
    kind = "ed25519" if key.algorithm.startswith("ed25519") else "rsa"
    return KeyInfo(entry["selector"], kind, key_path(settings, entry), key.dns_record_name(), key.dns_txt_value(),
                   zone_record(key), source, entry.get("created", ""))


def _dkim_state(session: Session, settings: Settings) -> tuple[list[dict[str, str]], dict[str, str] | None, str]:
    """(active entries, pending entry, where the active ones come from)."""
    return state_of(get_value(session, DKIM), settings)


def dkim_overview(session: Session, settings: Settings) -> tuple[list[KeyInfo], KeyInfo | None]:
    """The keys that sign now, and the generated key waiting for its DNS record (if any)."""
    active, pending, source = _dkim_state(session, settings)
    keys = [info for entry in active if (info := _info(settings, entry, source)) is not None]
    return keys, _info(settings, pending, "admin") if pending else None


def generate_dkim_key(session: Session, settings: Settings, kind: str, selector: str, by: str) -> KeyInfo:
    """Create a new key file under instance/dkim/ and keep it pending until its DNS record is published."""
    if kind not in KEY_KINDS:
        raise ValidationError("Choose RSA-2048 or Ed25519.", field="kind")
    selector = (selector or "").strip().lower()
    if not _SELECTOR.fullmatch(selector):
        raise ValidationError("The selector is one DNS label: letters, digits and hyphens, e.g. rapport2027.",
                              field="selector")
    active, _pending, _source = _dkim_state(session, settings)
    if selector in {e["selector"] for e in active}:
        raise ValidationError(f"The selector {selector} is in use. A new key needs a new selector, so the old "
                              "record stays valid for mail already on its way.", field="selector")
    folder = Path(settings.instance_path) / "dkim"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{selector}.{kind}.private.pem"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValidationError(f"A key file for the selector {selector} already exists ({path.name}); choose "
                              "another selector.", field="selector") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(generate_private_key_pem(kind, 2048))
    entry = {"selector": selector, "kind": kind, "path": str(path.relative_to(settings.instance_path)),
             "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
    state = dict(get_value(session, DKIM) or {})
    old = state.get("pending")
    state["pending"] = entry
    set_value(session, DKIM, state, by)
    if old:
        _remove_key_file(settings, old)
    info = _info(settings, entry, "admin")
    assert info is not None
    return info


def activate_pending_key(session: Session, settings: Settings, by: str) -> KeyInfo:
    """Sign with the pending key from now on; it replaces the active key of the same kind (caller commits)."""
    active, pending, _source = _dkim_state(session, settings)
    if not pending:
        raise ValidationError("There is no new key to activate. Generate one first.", field="kind")
    info = _info(settings, pending, "admin")
    if info is None:
        raise ValidationError("The new key file cannot be read; generate another one.", field="kind")
    kept = []
    for entry in active:
        current = _info(settings, entry, "")
        if current is not None and current.kind != info.kind:
            kept.append({k: v for k, v in entry.items()})
    set_value(session, DKIM, {"active": [*kept, dict(pending)], "pending": None}, by)
    return info


def discard_pending_key(session: Session, settings: Settings, by: str) -> None:
    """Forget the pending key and delete its file (caller commits)."""
    state = dict(get_value(session, DKIM) or {})
    pending = state.pop("pending", None)
    if not pending:
        raise ValidationError("There is no new key to discard.", field="kind")
    set_value(session, DKIM, state if state.get("active") else None, by)
    _remove_key_file(settings, pending)


def _remove_key_file(settings: Settings, entry: Mapping[str, str]) -> None:
    key_path(settings, entry).unlink(missing_ok=True)


@dataclass(frozen=True)
class DNSCheck:
    """What DNS answers for a key's record name, compared with the record to publish."""

    ok: bool
    message: str


def check_dns(info: KeyInfo, resolve: Any = None) -> DNSCheck:
    """Look up the key's TXT record and say whether it matches (resolve is injectable for tests)."""
    if resolve is None:
        resolve = resolve_txt
    try:
        records = resolve(info.record_name)
    except Exception as exc:
        return DNSCheck(False, f"No TXT record found at {info.record_name} yet ({type(exc).__name__}).")
    wanted = _tags(info.txt_value)
    for record in records:
        if _tags(record).get("p") == wanted["p"]:
            return DNSCheck(True, f"The record at {info.record_name} matches this key.")
    if records:
        return DNSCheck(False, f"{info.record_name} has a TXT record, but not this key's public key. "
                               "Check for a typo or an old value still cached.")
    return DNSCheck(False, f"No TXT record found at {info.record_name} yet.")


def _tags(value: str) -> dict[str, str]:
    tags = {}
    for part in value.split(";"):
        name, _sep, tag_value = part.partition("=")
        tags[name.strip()] = "".join(tag_value.split())
    return tags


def resolve_txt(name: str) -> list[str]:
    """TXT strings at name from the system's resolver (raises when there are none)."""
    import dns.resolver  # deferred: only DNS checks need dnspython

    resolver = dns.resolver.Resolver()
    resolver.lifetime = 4.0
    answer = resolver.resolve(name, "TXT")
    return [b"".join(r.strings).decode("ascii", "replace") for r in answer]


def ensure_dkim_key(settings: Settings) -> Path | None:
    """Generate an RSA-2048 DKIM key under instance/ when none exists; print nothing if it does."""
    path = settings.dkim_private_key_path
    if path is None:
        return None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(generate_private_key_pem("rsa", 2048))
        key = DKIMKey.from_pem(settings.dkim_domain, settings.dkim_selector, path.read_bytes())
        (path.parent / f"{settings.dkim_selector}.dns.txt").write_text(zone_record(key) + "\n")
        print(f"Generated a DKIM key: {path}")
    return path
