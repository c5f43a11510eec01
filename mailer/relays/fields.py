"""Readers for the loosely typed values inside relay payloads: every value may be missing, of the wrong JSON type or
huge, and each reader returns a bounded value of the right type or None."""

from __future__ import annotations

from typing import Any


def brackets(message_id: object) -> str | None:
    """A Message-ID with angle brackets (relays report it with or without)."""
    if not isinstance(message_id, str) or not message_id.strip() or len(message_id) > 990:
        return None
    value = message_id.strip()
    return value if value.startswith("<") else f"<{value}>"


def smtp_code(text: object) -> int | None:
    """The SMTP reply code at the start of a diagnostic ('smtp; 550 5.1.1 …', '550 unknown user')."""
    if not isinstance(text, str):
        return None
    for word in text.replace(";", " ").split()[:3]:
        if len(word) == 3 and word.isdigit() and 200 <= int(word) <= 599:
            return int(word)
    return None


def short(value: object, limit: int) -> str | None:
    """A non-empty string cut to limit characters, else None."""
    return value[:limit] if isinstance(value, str) and value else None


def obj(value: object) -> dict[str, Any]:
    """A JSON object, or an empty one in its place."""
    return value if isinstance(value, dict) else {}


def array(value: object) -> list[Any]:
    """A JSON list, or an empty one in its place."""
    return value if isinstance(value, list) else []
