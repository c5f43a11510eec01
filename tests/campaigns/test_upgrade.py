"""Upgrading: a database made by the previous release's migrations (0012), with data in it, reaches head intact."""

from __future__ import annotations

import datetime as dt

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from campaigns.accounts.users import hash_password
from campaigns.config import Settings
from campaigns.db import make_engine, make_session_factory, scratch_database
from campaigns.resources import alembic_config, migrate

PREVIOUS_RELEASE = "0012"
T = dt.datetime(2026, 11, 2, 9, 30)
CONTACT = ("INSERT INTO contact (id, email, first_name, last_name, phone, address_line1, address_line2, city, region, "
           "postal_code, country, timezone, locale, attributes, status, consent_source, created_at, updated_at, "
           "engagement_score, frequency, last_sent_at) VALUES (:id, :email, :first, '', '', '', '', 'Berlin', '', '', "
           "'DE', 'Europe/Berlin', 'de', :attrs, :status, 'import', :t, :t, :score, 'every', :t)")


def fill_previous_release(url: str) -> None:
    """Rows as release 0012 wrote them: an admin, contacts in a topic, a finished campaign with sends and events."""
    engine = make_engine(url)
    with engine.begin() as conn:
        run = conn.execute
        run(text("INSERT INTO admin_user (id, email, name, password_hash, role, active, created_at) VALUES "
                 "(1, 'ops@example.com', 'Ops', :h, 'admin', true, :t)"),
            {"h": hash_password("old-release-pw"), "t": T})
        run(text("INSERT INTO topic (id, name, description, public, created_at) VALUES (1, 'News', '', true, :t)"),
            {"t": T})
        for i, (status, score) in enumerate([("subscribed", 4.0), ("subscribed", 1.5), ("unsubscribed", 0.0)], 1):
            run(text(CONTACT), {"id": i, "email": f"reader{i}@example.com", "first": f"Reader{i}", "t": T,
                                "attrs": f'{{"shoe_size": {40 + i}}}', "status": status, "score": score})
            run(text("INSERT INTO subscription (contact_id, topic_id, subscribed, updated_at) VALUES (:c, 1, :s, :t)"),
                {"c": i, "s": status == "subscribed", "t": T})
        run(text("INSERT INTO campaign (id, name, kind, subject, preheader, from_name, from_email, reply_to, mjml, "
                 "text_body, all_contacts, status, status_reason, content_hash, created_at, updated_at, started_at, "
                 "finished_at, recipients, sent, failed, held, skipped, relay, recipients_listed) VALUES (1, "
                 "'October news', 'nurture', 'Hello', '', 'Ops', 'news@example.com', '', '<mjml></mjml>', '', false, "
                 "'finished', '', 'abc', :t, :t, :t, :t, 3, 2, 1, 0, 0, '', true)"), {"t": T})
        run(text("INSERT INTO campaign_topic (campaign_id, topic_id) VALUES (1, 1)"))
        run(text("INSERT INTO link (id, campaign_id, url, position) VALUES (1, 1, 'https://example.com/a', 0)"))
        for i, status in enumerate(["sent", "sent", "failed"], 1):
            run(text("INSERT INTO send (id, campaign_id, contact_id, status, attempts, last_error, created_at, "
                     "sent_at, reason) VALUES (:i, 1, :i, :s, 1, :e, :t, :t, '')"),
                {"i": i, "s": status, "e": "550 no such user" if status == "failed" else "", "t": T})
        for i, (contact, kind) in enumerate([(1, "open"), (1, "click"), (2, "open"), (3, "unsubscribe")], 1):
            run(text("INSERT INTO event (id, contact_id, campaign_id, send_id, type, occurred_at, data, machine) "
                     "VALUES (:i, :c, 1, :c, :k, :t, '{}', false)"), {"i": i, "c": contact, "k": kind, "t": T})
    engine.dispose()


def check_upgrade(url: str) -> None:
    from campaigns.accounts import users as accounts
    from campaigns.models import AdminUser, Campaign, Contact, Event, Send
    from campaigns.reports.campaign_report import campaign_report

    command.upgrade(alembic_config(url), PREVIOUS_RELEASE)
    fill_previous_release(url)
    migrate(Settings(database_url=url))           # what `rapport init` does after installing the new version
    engine = make_engine(url)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as conn:
        assert conn.scalars(text("SELECT version_num FROM alembic_version")).all() == [head]
    with make_session_factory(engine)() as session:
        contacts = session.scalars(select(Contact).order_by(Contact.id)).all()
        assert [(c.email, c.status, c.attributes, c.engagement_score) for c in contacts] == [
            ("reader1@example.com", "subscribed", {"shoe_size": 41}, 4.0),
            ("reader2@example.com", "subscribed", {"shoe_size": 42}, 1.5),
            ("reader3@example.com", "unsubscribed", {"shoe_size": 43}, 0.0)]
        campaign = session.get(Campaign, 1)
        assert (campaign.name, campaign.status, campaign.sent, campaign.failed) == ("October news", "finished", 2, 1)
        assert [t.name for t in campaign.topics] == ["News"]
        assert [s.status for s in session.scalars(select(Send).order_by(Send.id))] == ["sent", "sent", "failed"]
        assert len(session.scalars(select(Event)).all()) == 4
        report = campaign_report(session, 1)
        assert report["unsubscribes"] == 1
        # The old release's admin still logs in with the old password.
        user = accounts.authenticate(session, "ops@example.com", "old-release-pw", "127.0.0.1")
        assert isinstance(user, AdminUser) and user.id == 1
        session.rollback()
    engine.dispose()


def test_previous_release_upgrades_with_its_data(tmp_path, database_url) -> None:
    if database_url.startswith("sqlite"):
        check_upgrade(f"sqlite:///{tmp_path / 'previous.db'}")
    else:
        with scratch_database(database_url, "rapport_upgrade") as url:
            check_upgrade(url)
