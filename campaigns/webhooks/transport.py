"""One HTTP POST to an endpoint, with a short timeout, no redirects, and no way into the operator's own network.

The host is resolved once; unless Settings.webhooks_allow_private, every address must be public (not loopback,
private, link-local — cloud metadata —, multicast or reserved), and the connection goes to the address that was
checked, so a DNS answer that changes between the check and the connection cannot point it inward.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from campaigns import outbound
from campaigns.errors import ValidationError

MAX_BODY = 2000          # of an answer, kept in the delivery log


class Refused(ValidationError):
    """The URL may not be called (scheme, host, or an address inside the operator's network)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path and query) of an http(s) URL, or Refused with the reason."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("The endpoint must be an http:// or https:// URL with a host name.", field="url")
    if parts.username or parts.password:
        raise Refused("Put no user name or password in the URL: the signature authenticates Rapport.", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("The URL's port is not a number between 1 and 65535.", field="url") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def resolve(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to; Refused when the host does not resolve or resolves into a private network."""
    try:
        return outbound.resolve(host, port, allow_private)
    except outbound.Unresolvable:
        raise Refused(f"The host {host} does not resolve.", field="url") from None
    except outbound.PrivateAddress as exc:
        raise Refused(f"The host {host} resolves to {exc.address}, an address inside a private network; "
                      "set RAPPORT_WEBHOOKS_ALLOW_PRIVATE=1 to allow such endpoints.", field="url") from None


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> Answer:
    """POST body to url; the answer's status and the start of its body. Raises Refused or OSError (no answer)."""
    scheme, host, port, path = check_url(url)
    address = resolve(host, port, allow_private)
    cls = outbound.PinnedHTTPS if scheme == "https" else outbound.PinnedHTTP
    conn = cls(host, port, address, timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(MAX_BODY).decode("utf-8", "replace")
        return Answer(response.status, text)
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        conn.close()
