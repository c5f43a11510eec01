"""send rows without foreign keys: statement-level triggers delete a deleted contact's or campaign's send rows,
and on PostgreSQL an advisory lock orders a contact's deletion against inserts of send rows
(campaigns.sending.sendrows)

Revision ID: 0032
Revises: 0031

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0032"
down_revision: str | Sequence[str] | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCK = 727_001_032    # campaigns.sending.sendrows.CONTACT_SENDS_LOCK

PG_UP = [
    f"""CREATE FUNCTION rapport_contact_sends_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK});
    DELETE FROM send WHERE contact_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER contact_sends_gone AFTER DELETE ON contact REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION rapport_contact_sends_gone()""",
    """CREATE FUNCTION rapport_campaign_sends_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM send WHERE campaign_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER campaign_sends_gone AFTER DELETE ON campaign REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION rapport_campaign_sends_gone()""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS campaign_sends_gone ON campaign",
    "DROP FUNCTION IF EXISTS rapport_campaign_sends_gone()",
    "DROP TRIGGER IF EXISTS contact_sends_gone ON contact",
    "DROP FUNCTION IF EXISTS rapport_contact_sends_gone()",
]
SQLITE_UP = [
    """CREATE TRIGGER contact_sends_gone AFTER DELETE ON contact FOR EACH ROW
    BEGIN DELETE FROM send WHERE contact_id = OLD.id; END""",
    """CREATE TRIGGER campaign_sends_gone AFTER DELETE ON campaign FOR EACH ROW
    BEGIN DELETE FROM send WHERE campaign_id = OLD.id; END""",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS campaign_sends_gone", "DROP TRIGGER IF EXISTS contact_sends_gone"]

KEYS = (("fk_send_campaign_id_campaign", "campaign", "campaign_id"),
        ("fk_send_contact_id_contact", "contact", "contact_id"))


def upgrade() -> None:
    """Upgrade schema."""
    pg = op.get_bind().dialect.name == "postgresql"
    # No orphan to clean up: the keys dropped here guaranteed there is none (SQLite enforces them too, PRAGMA
    # foreign_keys=ON), and scanning a large send table would only slow the upgrade down.
    if pg:
        for name, _table, _column in KEYS:
            op.drop_constraint(name, "send", type_="foreignkey")
    else:
        with op.batch_alter_table("send", recreate="always") as batch:
            for name, _table, _column in KEYS:
                batch.drop_constraint(name, type_="foreignkey")
    for statement in PG_UP if pg else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    pg = op.get_bind().dialect.name == "postgresql"
    for statement in PG_DOWN if pg else SQLITE_DOWN:
        op.execute(statement)
    with op.batch_alter_table("send") as batch:
        for name, table, column in KEYS:
            batch.create_foreign_key(name, table, [column], ["id"], ondelete="CASCADE")
