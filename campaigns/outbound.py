"""Outgoing HTTP to addresses marketers and integrators type in (feed URLs, webhook endpoints), kept out of the
operator's own network: a host is resolved once, every address it resolves to is checked (loopback, private,
link-local such as cloud metadata, reserved, multicast, IPv4-mapped IPv6 included), and the connection goes to the
address that was checked, so a DNS answer that changes between check and connect cannot reach inside."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl


class Unresolvable(OSError):
    """The host has no address."""


class PrivateAddress(OSError):
    """The host resolves to an address inside a private or local network."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}")
        self.host, self.address = host, address


def blocked(address: str) -> bool:
    """True for an address outgoing requests must not reach: loopback, private, link-local, reserved, multicast…"""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int, allow_private: bool) -> str:
    """The one address of host to connect to; Unresolvable, or PrivateAddress unless allow_private."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{host} could not be found ({exc})") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise Unresolvable(f"{host} could not be found")
    if not allow_private:
        for address in addresses:
            if blocked(address):
                raise PrivateAddress(host, address)
    return addresses[0]


class PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a checked address (the Host header still names the host)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address; the certificate is verified for the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
