"""Account services that receive a session leave its transaction to the caller (the view or the command)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from campaigns.accounts import mail_setup
from campaigns.accounts import users as accounts
from campaigns.accounts.settings_store import get_value
from campaigns.errors import ValidationError
from campaigns.models import AdminUser, LoginFailure


def _failures(session) -> int:
    return session.scalar(select(func.count()).select_from(LoginFailure))


def test_a_failed_login_is_recorded_in_the_callers_transaction(db_session) -> None:
    db_session.add(AdminUser(email="ops@shop.test", name="Ops", role="admin",
                             password_hash=generate_password_hash("right password here")))
    db_session.commit()
    with pytest.raises(ValidationError):
        accounts.authenticate(db_session, "ops@shop.test", "wrong", "192.0.2.1")
    assert _failures(db_session) == 1       # flushed, visible to the caller…
    db_session.rollback()
    assert _failures(db_session) == 0       # …and only kept when the caller commits


def test_the_login_page_commits_failed_attempts(client, db_session) -> None:
    from tests.helpers import csrf, fresh

    r = client.post("/admin/login", data={"email": "nobody@shop.test", "password": "x",
                                          "csrf_token": csrf(client, "/admin/login")})
    assert r.status_code == 401
    fresh(db_session)
    assert _failures(db_session) == 1


def test_the_probe_mark_is_left_in_the_callers_transaction(runtime, db_session) -> None:
    mail_setup.record_probe(db_session, "nonce-1")
    db_session.rollback()
    assert get_value(db_session, mail_setup.PROBE_SETTING) is None
    mail_setup.record_probe(db_session, "nonce-2")
    db_session.commit()
    assert get_value(db_session, mail_setup.PROBE_SETTING)["nonce"] == "nonce-2"
