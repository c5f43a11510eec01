"""A malformed chunked request body is the client's error: answer 400, never 500.

gunicorn (and werkzeug's dev server) parse a chunked body lazily, while the app reads it, and raise their own
errors (gunicorn.http.errors.InvalidChunkSize, OSError "Invalid chunk header") from wsgi.input. Without this guard
those reach the app's error handler as a 500 and are logged as server faults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import BadRequest, HTTPException

MALFORMED = "The request body is malformed (its chunked transfer coding does not match the data sent)."


class _GuardedInput:
    """wsgi.input whose read errors become 400 Bad Request."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, name)(*args)
        except HTTPException:
            raise
        except Exception as exc:   # the server's own parse errors: their classes are not ours to import
            raise BadRequest(MALFORMED) from exc

    def read(self, *args: Any) -> bytes:
        return self._call("read", *args)

    def readline(self, *args: Any) -> bytes:
        return self._call("readline", *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._call("readlines", *args)

    def __iter__(self):
        return iter(self.readline, b"")


class ChunkedBodyGuard:
    """WSGI middleware wrapping wsgi.input of chunked requests in _GuardedInput."""

    def __init__(self, wsgi_app: Callable[[dict, Callable[..., Any]], Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and "wsgi.input" in environ:
            environ["wsgi.input"] = _GuardedInput(environ["wsgi.input"])
        return self.wsgi_app(environ, start_response)
