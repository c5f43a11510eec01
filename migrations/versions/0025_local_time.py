"""delivery in each reader's local time: the campaign's local time, default zone, late rule and best-time window;
the send row's not_before

Revision ID: 0025
Revises: 0021

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("local_time", sa.String(length=5), server_default="", nullable=False))
        batch.add_column(sa.Column("local_zone", sa.String(length=64), server_default="UTC", nullable=False))
        batch.add_column(sa.Column("local_late", sa.String(length=10), server_default="next_day", nullable=False))
        batch.add_column(sa.Column("best_time", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("best_from", sa.Integer(), server_default="8", nullable=False))
        batch.add_column(sa.Column("best_to", sa.Integer(), server_default="20", nullable=False))
    with op.batch_alter_table("send") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    queued = sa.text("status = 'queued' AND not_before IS NOT NULL")
    op.create_index("ix_send_local_queued", "send", ["campaign_id", "not_before", "next_attempt_at"], unique=False,
                    postgresql_where=queued, sqlite_where=queued)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_send_local_queued", table_name="send")
    with op.batch_alter_table("send") as batch:
        batch.drop_column("not_before")
    with op.batch_alter_table("campaign") as batch:
        for name in ("best_to", "best_from", "best_time", "local_late", "local_zone", "local_time"):
            batch.drop_column(name)
