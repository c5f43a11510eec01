"""The Alembic chain builds exactly the models, on SQLite and on PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from campaigns.db import Base


def test_migrated_schema_matches_models(runtime) -> None:
    with runtime.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_upgrading_keeps_existing_rows(tmp_path, database_url) -> None:
    """Rows written under the first schema survive every later migration (SQLite rebuilds tables to alter them)."""
    import datetime as dt

    from alembic import command
    from sqlalchemy import text

    from campaigns.db import make_engine, scratch_database
    from campaigns.resources import alembic_config

    def upgrade(url: str, rev: str) -> None:
        command.upgrade(alembic_config(url), rev)

    def check(url: str) -> None:
        upgrade(url, "0002")
        engine = make_engine(url)
        now = dt.datetime(2026, 1, 1)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO contact (id, email, first_name, last_name, phone, address_line1, "
                              "address_line2, city, region, postal_code, country, timezone, locale, attributes, "
                              "status, consent_source, created_at, updated_at, engagement_score, frequency) VALUES "
                              "(1, 'a@example.com', '', '', '', '', '', '', '', '', '', 'UTC', 'en', '{}', "
                              "'subscribed', '', :t, :t, 0, 'every')"), {"t": now})
            conn.execute(text("INSERT INTO campaign (id, name, kind, subject, preheader, from_name, from_email, "
                              "reply_to, mjml, text_body, all_contacts, status, status_reason, content_hash, "
                              "created_at, updated_at, recipients, sent, failed, held, skipped, relay) VALUES "
                              "(1, 'c', 'nurture', 's', '', '', '', '', '<mjml></mjml>', '', true, 'finished', '', "
                              "'', :t, :t, 1, 1, 0, 0, 0, '')"), {"t": now})
            conn.execute(text("INSERT INTO send (id, campaign_id, contact_id, status, attempts, last_error, "
                              "created_at) VALUES (1, 1, 1, 'sent', 1, '', :t)"), {"t": now})
        engine.dispose()
        upgrade(url, "head")
        engine = make_engine(url)
        with engine.connect() as conn:
            counts = [conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in ("contact", "campaign", "send")]
        engine.dispose()
        assert counts == [1, 1, 1]

    if database_url.startswith("sqlite"):
        check(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        with scratch_database(database_url, "rapport_mig") as url:
            check(url)
