"""campaigns sent to a fixed list of contacts (automation runs, digests)

Revision ID: 0011
Revises: 0010

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipients_listed", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE campaign SET recipients_listed = true WHERE id IN "
               "(SELECT campaign_id FROM automation_run WHERE campaign_id IS NOT NULL "
               "UNION SELECT campaign_id FROM digest_run)")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("recipients_listed")
