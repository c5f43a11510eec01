"""Who made a tracking request: a person's mail client or browser, or a machine (Apple Mail Privacy Protection,
an image proxy, a security scanner, a link checker) — by its user agent and network alone. Used for campaign
sends' hits (campaigns.feedback.engagement) and transactional messages' (campaigns.feedback.tx_hits)."""

from __future__ import annotations

import hashlib
import ipaddress
import re

_APPLE = ipaddress.ip_network("17.0.0.0/8")
_PROXY_AGENTS = re.compile(r"GoogleImageProxy|ggpht\.com|YahooMailProxy|Yahoo! ?Slurp", re.I)
_SCANNER_AGENTS = re.compile(
    r"bot\b|bot/|spider|crawl|scanner|headless|phantomjs|python-|curl/|wget|go-http-client|java/|libwww|okhttp"
    r"|httpclient|barracuda|mimecast|proofpoint|messagelabs|symantec|trend ?micro|fortiguard|ironport|cisco"
    r"|sophos|forcepoint|safelinks|linkpreview|preview|facebookexternalhit|slack|whatsapp|outlook-ios-linkcheck"
    r"|microsoft office protocol|ms-office|zgrab|nmap|masscan",
    re.I,
)


def machine_agent(user_agent: str, ip: str) -> str:
    """Why a request is a machine by who made it ('' when it looks like a person's mail client or browser)."""
    ua = user_agent.strip()
    if not ua:
        return "no user agent"
    if ua == "Mozilla/5.0":
        return "apple privacy protection"
    try:
        if ip and ipaddress.ip_address(ip) in _APPLE:
            return "apple privacy protection"
    except ValueError:
        pass
    if _PROXY_AGENTS.search(ua):
        return "image proxy"
    if _SCANNER_AGENTS.search(ua):
        return "security scanner"
    return ""


def fetcher_of(user_agent: str, ip: str) -> str:
    """A short hash of the client's network (/24, /48) and agent: one proxy or scanner fetching for many."""
    try:
        addr = ipaddress.ip_address(ip)
        net = ipaddress.ip_network(f"{ip}/{24 if addr.version == 4 else 48}", strict=False)
    except ValueError:
        net = ip
    return hashlib.sha256(f"{net}|{user_agent}".encode()).hexdigest()[:16]
