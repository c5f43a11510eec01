"""Fetching an external feed safely: http(s) only, a time limit, a size limit, conditional GET, and no requests to
private networks (SSRF guard) unless the operator allows them (RAPPORT_FEEDS_ALLOW_PRIVATE=1).

The host name is resolved once, every address it resolves to is checked, and the connection goes to a checked
address (the name is still used for the Host header and TLS), so a DNS answer that changes between the check and
the connection cannot lead to an internal address. Redirects are followed by hand, each target checked again.
"""

from __future__ import annotations

import http.client
import ssl
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from campaigns import outbound
from campaigns.errors import RapportError

TIMEOUT = 10.0              # seconds for the whole fetch (each socket operation and the total)
MAX_BYTES = 2 * 1024 * 1024
MAX_REDIRECTS = 3
USER_AGENT = "Rapport feed reader (RSS-to-email)"
ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"


class FeedError(RapportError):
    """The feed could not be fetched or read; str() says why, in words for the marketer."""


@dataclass(frozen=True)
class Fetched:
    """The answer: not_modified (304, body empty) or the body with the validators to send next time."""

    body: bytes = b""
    etag: str = ""
    last_modified: str = ""
    not_modified: bool = False
    url: str = ""               # where the feed was finally read (after redirects)


def check_url(url: str) -> str:
    """The URL stripped, if it is an absolute http(s) URL with a host; raises FeedError otherwise."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FeedError("the feed address must start with http:// or https:// and name a host")
    if parts.username or parts.password:
        raise FeedError("the feed address must not contain a user name or password")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise FeedError("the feed address has an invalid port") from None
    if len(url) > 2000:
        raise FeedError("the feed address is longer than 2,000 characters")
    return url


def _resolve(host: str, port: int, allow_private: bool) -> str:
    """One address of host to connect to; raises FeedError when it resolves to nothing or to a private address."""
    try:
        return outbound.resolve(host, port, allow_private)
    except outbound.Unresolvable as exc:
        raise FeedError(f"the feed's host {exc}") from None
    except outbound.PrivateAddress as exc:
        raise FeedError(f"the feed's host {host} is a private or local address ({exc.address}); feeds are read from "
                        "the public internet only (the operator can allow private addresses with "
                        "RAPPORT_FEEDS_ALLOW_PRIVATE=1)") from None


def fetch(url: str, *, etag: str = "", last_modified: str = "", allow_private: bool = False,
          timeout: float = TIMEOUT, max_bytes: int = MAX_BYTES) -> Fetched:
    """GET the feed (conditionally, when validators are given); raises FeedError with the reason."""
    deadline = time.monotonic() + timeout
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(check_url(url))
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        address = _resolve(parts.hostname or "", port, allow_private)
        conn_cls = outbound.PinnedHTTPS if https else outbound.PinnedHTTP
        conn = conn_cls(parts.hostname or "", port, address, timeout)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location", ""))
                continue
            if resp.status == 304:
                return Fetched(etag=etag, last_modified=last_modified, not_modified=True, url=url)
            if resp.status != 200:
                raise FeedError(f"the feed answered HTTP {resp.status} {resp.reason}".rstrip())
            body = _read(resp, max_bytes, deadline)
            if (resp.getheader("Content-Encoding") or "").strip().lower() in ("gzip", "x-gzip"):
                body = _gunzip(body, max_bytes)    # sent compressed although we asked for identity
            return Fetched(body=body, etag=(resp.getheader("ETag") or "")[:500],
                           last_modified=(resp.getheader("Last-Modified") or "")[:100], url=url)
        except TimeoutError:
            raise FeedError(f"the feed did not answer within {timeout:g} seconds") from None
        except ssl.SSLError as exc:
            raise FeedError(f"the feed's TLS connection failed ({exc.reason or exc})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FeedError(f"the feed could not be read ({exc.__class__.__name__}: {exc})") from None
        finally:
            conn.close()
    raise FeedError(f"the feed redirected more than {MAX_REDIRECTS} times")


def _read(resp: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    """The body, at most max_bytes, before the deadline."""
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FeedError(f"the feed is larger than {max_bytes // 1024:,} KB")
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = resp.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise FeedError(f"the feed is larger than {max_bytes // 1024:,} KB")
        chunks.append(chunk)


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """A gzip body inflated to at most max_bytes (a small body must not expand into a huge one)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise FeedError(f"the feed's compressed body is broken ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise FeedError(f"the feed is larger than {max_bytes // 1024:,} KB")
    return out
