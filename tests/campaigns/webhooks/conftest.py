"""A real HTTP receiver on a local port that checks every signature the way the Standard Webhooks spec says
(written here from the spec, not with Rapport's own signing code), and can answer with failures on purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from campaigns.webhooks import endpoints


def standard_webhooks_valid(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """Verify as a receiver would: HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>" with the base64
    secret after whsec_, compared with every "v1,<base64>" in webhook-signature; timestamp within 5 minutes."""
    if not secret.startswith("whsec_") or "webhook-timestamp" not in headers:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(stamp)) > tolerance:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    return any(part.startswith("v1,") and hmac.compare_digest(part[3:].encode(), expected)
               for part in headers["webhook-signature"].split())


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    valid: bool

    @property
    def payload(self) -> dict:
        return json.loads(self.body)

    @property
    def type(self) -> str:
        return self.payload["type"]


@dataclass
class Receiver:
    """What the receiver got; `answers` are the statuses of the next requests (then 200)."""

    url: str = ""
    secret: str = ""
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def types(self) -> list[str]:
        return [r.type for r in self.received]


@pytest.fixture()
def settings(settings):
    """Webhook endpoints on 127.0.0.1 are allowed here (the receiver); short timeouts."""
    return settings.with_overrides({"webhooks_allow_private": True, "webhook_timeout": 3.0,
                                    "webhook_retry_delays": (60, 300, 900)})


@pytest.fixture()
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                status = state.answers.pop(0) if state.answers else 200
                state.received.append(Received(headers, body, standard_webhooks_valid(state.secret, headers, body)))
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"receiver failed on purpose")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/rapport?source=test"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture()
def subscribe(runtime, receiver):
    """Register the receiver for event types; returns the endpoint id (the receiver learns the secret)."""

    def make(types, *, include_machine: bool = False, url: str | None = None) -> int:
        with runtime.session_factory() as session:
            saved = endpoints.create(session, runtime.settings, url=url or receiver.url, description="CRM",
                                     event_types=[str(t) for t in types], include_machine=include_machine,
                                     created_by="test")
            session.commit()
            receiver.secret = saved.secret
            return saved.endpoint.id

    return make
