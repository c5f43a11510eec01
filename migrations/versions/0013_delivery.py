"""delivery you can trust: claim owner and lease on sends, a dispatch cursor on campaigns

Revision ID: 0013
Revises: 0012

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("send") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("dispatch_cursor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                   server_default="0", nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("dispatch_cursor")
    with op.batch_alter_table("send") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
