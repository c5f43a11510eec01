"""Admin access: login throttling, password hashing, session expiry, logout, CSRF and roles on every route."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from campaigns.accounts.users import MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_IP
from campaigns.models import AdminUser, LoginFailure

PASSWORD = "correct horse battery"
SAFE = {"GET", "HEAD", "OPTIONS"}


def csrf(client, url: str = "/admin/login") -> str:
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def add_user(db_session, email: str, role: str, password: str = PASSWORD, **kw) -> AdminUser:
    user = AdminUser(email=email, name=email.split("@")[0].title(), role=role,
                     password_hash=kw.pop("password_hash", None) or generate_password_hash(password), **kw)
    db_session.add(user)
    db_session.commit()
    return user


def reread(db_session, model, row_id: int):
    """The row as the database has it now (not the copy the test's session remembers)."""
    db_session.rollback()
    return db_session.scalars(select(model).where(model.id == row_id)
                              .execution_options(populate_existing=True)).one()


def login(client, email: str, password: str = PASSWORD, ip: str = "198.51.100.7"):
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": csrf(client)},
                       environ_base={"REMOTE_ADDR": ip})


def as_role(app, db_session, role: str):
    client = app.test_client()
    add_user(db_session, f"{role}@shop.test", role)
    assert login(client, f"{role}@shop.test").status_code == 302
    return client


def test_wrong_password_is_refused_and_the_address_is_kept(client, db_session) -> None:
    add_user(db_session, "anna@shop.test", "editor")
    r = login(client, "Anna@Shop.test", "wrong password")
    assert r.status_code == 401
    page = r.get_data(as_text=True)
    assert "Wrong email or password" in page and 'value="Anna@Shop.test"' in page
    assert client.get("/admin/contacts").status_code == 302
    r = login(client, "Anna@Shop.test")                       # the address is matched case-insensitively
    assert r.status_code == 302 and r.headers["Location"] == "/admin/"


def test_unknown_and_deactivated_accounts_get_the_same_answer(client, db_session) -> None:
    add_user(db_session, "gone@shop.test", "editor", active=False)
    for email in ("gone@shop.test", "nobody@shop.test"):
        r = login(client, email)
        assert r.status_code == 401 and "Wrong email or password" in r.get_data(as_text=True)


def test_login_is_throttled_per_account_even_with_the_right_password(app, client, db_session) -> None:
    add_user(db_session, "anna@shop.test", "editor")
    for i in range(MAX_FAILURES_PER_ACCOUNT):
        assert login(client, "anna@shop.test", f"guess {i}", ip=f"203.0.113.{i}").status_code == 401
    r = login(client, "anna@shop.test", ip="203.0.113.99")
    assert r.status_code == 429
    assert "Too many failed logins" in r.get_data(as_text=True) and int(r.headers["Retry-After"]) >= 60
    assert client.get("/admin/contacts").status_code == 302    # not logged in
    # Another account is not affected.
    add_user(db_session, "ben@shop.test", "editor")
    assert login(app.test_client(), "ben@shop.test").status_code == 302


def test_login_is_throttled_per_ip_across_accounts(app, db_session) -> None:
    add_user(db_session, "anna@shop.test", "editor")
    client = app.test_client()
    for i in range(MAX_FAILURES_PER_IP):
        assert login(client, f"guess{i}@shop.test", "x" * 12).status_code == 401
    assert login(client, "anna@shop.test").status_code == 429
    assert login(app.test_client(), "anna@shop.test", ip="192.0.2.1").status_code == 302


def test_a_successful_login_clears_the_accounts_failures(client, db_session) -> None:
    add_user(db_session, "anna@shop.test", "editor")
    for _ in range(MAX_FAILURES_PER_ACCOUNT - 1):
        login(client, "anna@shop.test", "nope nope nope")
    assert login(client, "anna@shop.test").status_code == 302
    db_session.rollback()
    assert db_session.scalars(select(LoginFailure).where(LoginFailure.email == "anna@shop.test")).all() == []


def test_old_password_hashes_are_upgraded_at_login(client, db_session) -> None:
    old = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    user = add_user(db_session, "anna@shop.test", "editor", password_hash=old)
    assert login(client, "anna@shop.test").status_code == 302
    db_session.rollback()
    upgraded = reread(db_session, AdminUser, user.id).password_hash
    assert upgraded.startswith("scrypt:") and upgraded != old
    client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin/")})
    assert login(client, "anna@shop.test").status_code == 302       # the new hash checks the same password


@pytest.mark.parametrize("key, age", [("seen_at", 3 * 3600), ("login_at", 13 * 3600)])
def test_idle_and_old_sessions_expire(client, db_session, key: str, age: int) -> None:
    add_user(db_session, "anna@shop.test", "editor")
    login(client, "anna@shop.test")
    assert client.get("/admin/contacts").status_code == 200
    with client.session_transaction() as sess:
        sess[key] = int(time.time()) - age
    r = client.get("/admin/contacts")
    assert r.status_code == 302 and "/admin/login" in r.headers["Location"]
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Your session has expired" in page
    assert client.get("/admin/contacts").status_code == 302


def test_logout_ends_the_session(client, db_session) -> None:
    add_user(db_session, "anna@shop.test", "editor")
    login(client, "anna@shop.test")
    r = client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin/")})
    assert r.status_code == 302
    assert client.get("/admin/contacts").status_code == 302
    with client.session_transaction() as sess:
        assert "_user_id" not in sess and "login_at" not in sess


def test_the_session_cookie_is_http_only_and_lax(client, db_session) -> None:
    add_user(db_session, "anna@shop.test", "editor")
    r = login(client, "anna@shop.test")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie


# ------------------------------------------------------------------ every route


def _url(rule) -> str:
    """A concrete URL for a rule: ids 1, names x, the first choice of an any() converter."""
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        kind = type(converter).__name__
        if kind in ("IntegerConverter", "NumberConverter"):
            values[name] = 1
        elif kind == "AnyConverter":
            values[name] = sorted(converter.items)[0] if hasattr(converter, "items") else \
                re.search(r"\(\?:(\w+)", converter.regex).group(1)
        elif kind == "UUIDConverter":
            values[name] = "00000000-0000-4000-8000-000000000000"
        else:
            values[name] = "00000000-0000-4000-8000-000000000000"
    return rule.build(values)[1]


def _changing_routes(app) -> list[tuple[str, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint in ("admin.login", "admin.logout"):
            continue
        for method in sorted((rule.methods or set()) - SAFE):
            out.append((rule.endpoint, method, _url(rule)))
    return out


def test_there_are_state_changing_routes_to_check(app) -> None:
    endpoints = {e for e, _m, _u in _changing_routes(app)}
    assert {"admin.contact_import", "admin.settings_users", "admin.topics"} <= endpoints


def test_viewers_get_403_on_every_state_changing_route(app, db_session) -> None:
    viewer = as_role(app, db_session, "viewer")
    token = csrf(viewer, "/admin/")
    wrong = []
    for endpoint, method, url in _changing_routes(app):
        r = viewer.open(url, method=method, data={"csrf_token": token})
        if r.status_code != 403:
            wrong.append((endpoint, method, url, r.status_code))
    assert wrong == []
    assert viewer.get("/admin/contacts").status_code == 200            # but they may look


def test_every_admin_form_needs_a_csrf_token(app, db_session) -> None:
    """A form post without a token is refused; a CSRF-exempt view (an API with its own key) refuses without it."""
    exempt = app.extensions["csrf"]._exempt_views
    admin = as_role(app, db_session, "admin")
    wrong = []
    for endpoint, method, url in _changing_routes(app):
        view = app.view_functions[endpoint]
        r = admin.open(url, method=method, data={"name": "x"})
        if f"{view.__module__}.{view.__name__}" in exempt:
            ok = r.status_code in (401, 403)
        else:
            ok = r.status_code == 400 and "form has expired" in r.get_data(as_text=True)
        if not ok:
            wrong.append((endpoint, method, url, r.status_code))
    assert wrong == []


def test_settings_pages_are_for_admins_only(app, db_session) -> None:
    editor = as_role(app, db_session, "editor")
    settings_rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.settings")
                      and "GET" in (r.methods or set())]
    assert len(settings_rules) >= 6
    for rule in settings_rules:
        assert editor.get(_url(rule)).status_code == 403, rule.rule
    assert "Settings</a>" not in editor.get("/admin/").get_data(as_text=True)
    admin = as_role(app, db_session, "admin")
    assert admin.get("/admin/settings").status_code == 200
    assert "Settings</a>" in admin.get("/admin/").get_data(as_text=True)


def test_create_admin_command_makes_a_user_who_can_log_in(app, runtime, db_session) -> None:
    from campaigns.cli import create_admin

    with pytest.raises(SystemExit):
        create_admin(runtime.settings, "boss@shop.test", "Boss", "short")
    create_admin(runtime.settings, "Boss@Shop.test", "Boss", "a long enough password")
    client = app.test_client()
    assert login(client, "boss@shop.test", "a long enough password").status_code == 302
    assert client.get("/admin/settings").status_code == 200
