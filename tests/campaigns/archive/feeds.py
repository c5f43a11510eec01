"""A local HTTP server serving a feed the test changes (RSS 2.0 or Atom), with ETag support and fault modes."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


@dataclass
class FeedServer:
    """What the server answers: body (bytes), status, and what it was asked (requests, conditional ones)."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml"
    delay: float = 0.0           # seconds to wait before answering (a feed that hangs)
    redirect_to: str = ""        # answer 302 to this address instead
    encoding: str = ""           # a Content-Encoding header to send (the body is sent as it is)
    requests: int = 0
    conditional_hits: int = 0
    port: int = 0
    headers_seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/blog/feed.xml"

    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


def rss(*items: tuple[str, str, str], title: str = "Green Thumb blog") -> bytes:
    """An RSS 2.0 document; items are (guid, title, description HTML), published a day apart, newest first."""
    start = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    parts = []
    for i, (guid, item_title, html) in enumerate(items):
        when = format_datetime(start - dt.timedelta(days=i))
        parts.append(f"<item><guid isPermaLink=\"false\">{escape(guid)}</guid><title>{escape(item_title)}</title>"
                     f"<link>https://blog.shop.test/{escape(guid)}</link><pubDate>{when}</pubDate>"
                     f"<description>{escape(html)}</description></item>")
    return (f"<?xml version=\"1.0\" encoding=\"utf-8\"?><rss version=\"2.0\"><channel><title>{escape(title)}</title>"
            f"<link>https://blog.shop.test/</link><description>news</description>{''.join(parts)}</channel></rss>"
            ).encode()


@contextmanager
def serve(state: FeedServer) -> Iterator[FeedServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            state.headers_seen.append(dict(self.headers.items()))
            if state.delay:
                time.sleep(state.delay)
            if state.redirect_to:
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if state.status == 200 and self.headers.get("If-None-Match") == state.etag():
                state.conditional_hits += 1
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(state.status)
            self.send_header("Content-Type", state.content_type)
            self.send_header("Content-Length", str(len(state.body)))
            if state.encoding:
                self.send_header("Content-Encoding", state.encoding)
            if state.status == 200:
                self.send_header("ETag", state.etag())
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass     # a client that stops reading (the size limit, the timeout) is what some tests do on purpose

    server = Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
