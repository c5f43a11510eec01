"""Every admin page reachable by links from the dashboard, on the demo data, answers without a server error —
for an admin, and for a viewer (who may be refused, but never with a 500)."""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest

from campaigns.demo.data import DEMO_EMAIL, DEMO_PASSWORD, seed
from campaigns.models import AdminRole, AdminUser

HREF = re.compile(r'href="([^"#]+)"')
# Links that change nothing but are slow or stream big files are still fetched; these leave the admin.
SKIP = ("/admin/logout",)


def _crawl(client, limit: int = 400) -> dict[str, int]:
    seen: dict[str, int] = {}
    queue = deque(["/admin/"])
    while queue and len(seen) < limit:
        url = queue.popleft()
        if url in seen:
            continue
        r = client.get(url)
        seen[url] = r.status_code
        data = r.get_data()   # consume streamed responses (CSV exports, print files) to their end
        r.close()
        if r.status_code != 200 or not r.mimetype == "text/html":
            continue
        body = data.decode()
        for href in HREF.findall(body):
            target = urljoin(url, href.replace("&amp;", "&"))
            parts = urlsplit(target)
            if parts.netloc or not parts.path.startswith("/admin") or parts.path.startswith(SKIP):
                continue
            # One page of each paginated list is enough: cursors make every page a new URL.
            path = parts.path + (f"?{parts.query}" if parts.query and "after" not in parts.query
                                 and "before" not in parts.query else "")
            if path not in seen:
                queue.append(path)
    return seen


def _login(client, email: str, password: str) -> None:
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token})
    assert r.status_code == 302


@pytest.fixture()
def demo(runtime):
    assert seed(runtime.settings, contacts=40)
    return runtime


@pytest.mark.slow
def test_no_admin_page_answers_500_on_the_demo_data(demo, client, db_session) -> None:
    _login(client, DEMO_EMAIL, DEMO_PASSWORD)
    seen = _crawl(client)
    errors = {url: code for url, code in seen.items() if code >= 500}
    assert not errors, errors
    assert len(seen) > 40   # the crawl really went through the admin
    for area in ("segments", "coupons", "surveys", "automations", "signups", "settings", "campaigns", "contacts"):
        assert any(f"/admin/{area}" in url for url in seen), area


@pytest.mark.slow
def test_a_viewer_crawling_the_admin_never_meets_a_500(demo, client, db_session) -> None:
    from werkzeug.security import generate_password_hash

    db_session.add(AdminUser(email="viewer@rapport.test", name="Viewer", role=AdminRole.VIEWER,
                             password_hash=generate_password_hash("viewer-pass-123")))
    db_session.commit()
    _login(client, "viewer@rapport.test", "viewer-pass-123")
    seen = _crawl(client)
    errors = {url: code for url, code in seen.items() if code >= 500}
    assert not errors, errors
