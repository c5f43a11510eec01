"""Helpers shared by admin views: the CSP of marketer HTML shown in the admin, HTML escaping, safe redirect targets."""

from __future__ import annotations

from urllib.parse import urlsplit

from markupsafe import escape

# The preview and outbox bodies are marketer/sender HTML: shown only inside a sandboxed iframe, and served with a
# CSP that forbids scripts, forms and plugins even if opened directly.
PREVIEW_CSP = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; img-src * data:; "
               "style-src 'unsafe-inline' *; font-src * data:; base-uri 'none'; form-action 'none'")

# Encoded slashes, backslashes and control characters: a later decoding step could turn them into a host.
_ENCODED_TRICKS = ("%2f", "%5c", "%00", "%09", "%0a", "%0d")


def local_path(raw: str) -> str | None:
    """raw if it is plainly a path on this site, else None: whatever a browser or Werkzeug would strip or
    reinterpret first (control and invisible characters, backslashes, encoded slashes) disqualifies it."""
    if not raw or len(raw) > 2000 or not raw.isprintable() or "\\" in raw:
        return None
    if raw[0] != "/" or raw[1:2] == "/":
        return None
    lowered = raw.lower()
    if any(code in lowered for code in _ENCODED_TRICKS):
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return None
    return raw



def escape_text(text: str) -> str:
    """Plain text made safe to put inside HTML."""
    return str(escape(text))
