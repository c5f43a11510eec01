"""Helpers shared by admin views: the CSP of marketer HTML shown in the admin, HTML escaping, safe redirect targets,
streamed CSV downloads."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from flask import Response
from markupsafe import escape
from sqlalchemy.orm import Session

from campaigns.web.context import db, rt

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


def streamed_csv(name: str, fallback: str, suffix: str, chunks: Callable[[Session], Iterable[str]]) -> Response:
    """A CSV download streamed from a read session of its own (the request's is closed when the view returns, and its
    transaction is let go first, so a long download holds no lock); named after `name` made file-safe, or fallback."""
    filename = "".join(ch if ch.isalnum() else "-" for ch in name.lower())[:60] or fallback
    db().rollback()
    session = rt().read_session_factory()

    def generate():
        try:
            for chunk in chunks(session):
                yield chunk.encode("utf-8")
        finally:
            session.close()

    return Response(generate(), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}-{suffix}.csv"'})
