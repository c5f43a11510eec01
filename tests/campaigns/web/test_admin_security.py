"""Admin hardening: the login's `next` never leaves the site, and the admin CSP pins base and form targets."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest

from tests.campaigns.web.test_admin import admin_user, csrf  # noqa: F401  (fixture)

PASSWORD = "correct horse battery"


def login_with_next(client, raw_query: str) -> str:
    """Log in with the query string given as sent on the wire; the Location the browser would follow."""
    token = csrf(client, "/admin/login")
    r = client.post(f"/admin/login?next={raw_query}", data={"email": "marketer@shop.test", "password": PASSWORD,
                                                            "csrf_token": token})
    assert r.status_code == 302, r.status_code
    return r.headers["Location"]


@pytest.mark.parametrize("raw", [
    "/%09/evil.example", "/%0d%0a/x", "/%0a/evil.example", "%09//evil.example", "//evil.example",
    "/\\evil.example", "/%5cevil.example", "%2f%2fevil.example", "/%2fevil.example", "/%252fevil.example",
    "https://evil.example/admin/", "javascript:alert(1)", "http:/evil.example", "/%00/evil.example",
    "\u3000//evil.example", "/%e2%80%8b/evil.example", "evil.example", "%20//evil.example",
])
def test_login_never_redirects_off_site(client, admin_user, raw: str) -> None:  # noqa: F811
    location = login_with_next(client, raw if raw.isascii() else quote(raw))
    assert location == "/admin/", (raw, location)


@pytest.mark.parametrize("raw", ["/admin/contacts", "/admin/contacts?status=subscribed&topic=2",
                                 "/admin/campaigns/3%20x"])
def test_login_returns_to_a_local_page(client, admin_user, raw: str) -> None:  # noqa: F811
    location = login_with_next(client, quote(raw, safe="/"))
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc and location == raw


def test_admin_pages_pin_base_uri_and_form_targets(client, admin_user) -> None:  # noqa: F811
    for url in ("/admin/login", "/admin/contacts"):
        csp = {part.split()[0]: part.split()[1:] for part in
               client.get(url).headers["Content-Security-Policy"].split("; ")}
        assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'self'"], url
