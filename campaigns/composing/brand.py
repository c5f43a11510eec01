"""The sender's brand as recipients see it: name and logo on public pages, and the default mail language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from campaigns.accounts.settings_store import get_value, set_value
from campaigns.config import Settings
from campaigns.errors import ValidationError
from mailer.compose import valid_language

BRAND = "brand"


@dataclass(frozen=True)
class Brand:
    """Who recipients hear from: a name, an optional logo (https URL) and the default language of new mail."""

    name: str
    logo_url: str
    language: str


def brand(session: Session, settings: Settings) -> Brand:
    """The brand saved in Settings, else SENDER_NAME, no logo and DEFAULT_LANGUAGE."""
    stored = get_value(session, BRAND) or {}
    return Brand(name=stored.get("name") or settings.sender_name, logo_url=stored.get("logo_url") or "",
                 language=stored.get("language") or settings.default_language)


def save_brand(session: Session, form: Mapping[str, str], by: str) -> Brand:
    """Validate and store name, logo_url and language (blank fields fall back to the defaults); caller commits."""
    name = " ".join((form.get("name") or "").split())
    if len(name) > 200:
        raise ValidationError("The name is longer than 200 characters.", field="name")
    logo = (form.get("logo_url") or "").strip()
    if logo:
        parts = urlsplit(logo)
        # Public pages load the logo from the visitor's browser: https only, so it never degrades the page.
        if parts.scheme != "https" or not parts.hostname or len(logo) > 1000 or any(c in logo for c in " \"'<>"):
            raise ValidationError("The logo must be an https:// address of an image, such as "
                                  "https://shop.example/logo.png.", field="logo_url")
    language = (form.get("language") or "").strip()
    if language and not valid_language(language):
        raise ValidationError("The language is a code such as en, de or pt-BR.", field="language")
    value = {k: v for k, v in (("name", name), ("logo_url", logo), ("language", language)) if v}
    set_value(session, BRAND, value or None, by)
    return Brand(name, logo, language)
