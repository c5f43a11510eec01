"""bench/loadgen.py, the fallback when wrk is missing: what it reports is what the server received."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench import loadgen


def test_counts_match_the_receiving_server_and_paths_rotate() -> None:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with lock:
                seen[self.path] += 1
            status = 302 if self.path.startswith("/c/") else (404 if self.path == "/missing" else 200)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        result = loadgen.run(base, ["/o/a", "/c/b", "/missing"], 1.0, connections=4)
    finally:
        server.shutdown()
        server.server_close()
    assert result["requests"] == sum(seen.values()) > 0
    assert result["ok"] == seen["/o/a"] + seen["/c/b"]          # the 404s are answers but not 2xx/3xx
    assert set(seen) == {"/o/a", "/c/b", "/missing"} and result["errors"] == ""
    assert result["rps"] > 0 and result["p99"].endswith("ms")
