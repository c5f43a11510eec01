"""campaign language and DMARC-alignment overrides on campaigns and sender identities

Revision ID: 0017
Revises: 0012

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("language", sa.String(length=35), server_default="en", nullable=False))
        batch.add_column(sa.Column("allow_unaligned_from", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("sender") as batch:
        batch.add_column(sa.Column("allow_unaligned", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("sender") as batch:
        batch.drop_column("allow_unaligned")
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("allow_unaligned_from")
        batch.drop_column("language")
