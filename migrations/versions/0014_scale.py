"""the admin at 1,000,000 contacts: indexes for list growth (contact.created_at), account owners
(contact.owner_id: the settings page's per-sender counts and deleting a sender) and the interest picker;
contact.attributes becomes jsonb on PostgreSQL (SQLite keeps JSON text)

Revision ID: 0014
Revises: 0012

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_contact_created_at", "contact", ["created_at"])
    op.create_index("ix_contact_owner_id", "contact", ["owner_id"])
    op.create_index("ix_contact_interest_interest", "contact_interest", ["interest"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE contact ALTER COLUMN attributes TYPE jsonb USING attributes::jsonb")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE contact ALTER COLUMN attributes TYPE json USING attributes::json")
    op.drop_index("ix_contact_interest_interest", table_name="contact_interest")
    op.drop_index("ix_contact_owner_id", table_name="contact")
    op.drop_index("ix_contact_created_at", table_name="contact")
