"""A small HTTP load generator for when wrk is not installed: keep-alive connections in threads, fixed duration.

It reports what bench/tracking.py reads from wrk (requests, 2xx/3xx answers, requests per second, p99 latency,
socket errors). Python's client costs far more CPU per request than wrk's C, so on a small machine the figures
measure the client as much as the server: they are comparable with each other, not with wrk runs.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from urllib.parse import urlsplit


def run(url: str, paths: list[str] | None, seconds: float, *, connections: int = 32,
        headers: dict[str, str] | None = None) -> dict:
    """GET url (or, given paths, each path in turn on url's host) from `connections` threads for `seconds`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    targets = paths or [parts.path or "/"]
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    totals = {"requests": 0, "ok": 0, "errors": 0}
    stop_at = time.monotonic() + seconds

    def client() -> None:
        conn: http.client.HTTPConnection | None = None
        mine: list[float] = []
        done = ok = errors = 0
        while time.monotonic() < stop_at:
            path = targets[next(counter) % len(targets)]
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("GET", path, headers=headers or {})
                response = conn.getresponse()
                response.read()
                done += 1
                ok += 200 <= response.status < 400
                mine.append(time.monotonic() - started)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                errors += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            totals["requests"] += done
            totals["ok"] += ok
            totals["errors"] += errors
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    return {"requests": totals["requests"], "ok": totals["ok"], "rps": totals["requests"] / elapsed,
            "p99": f"{p99 * 1000:.2f}ms", "errors": f"{totals['errors']} failed" if totals["errors"] else ""}
