"""A/B tests: variants of a campaign tried on a share of its audience, the decision, and each send's variant

Revision ID: 0024
Revises: 0026

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "ab_test",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("test_percent", sa.Integer(), nullable=False),
        sa.Column("criterion", sa.String(length=30), nullable=False),
        sa.Column("wait_minutes", sa.Integer(), nullable=False),
        sa.Column("auto_send", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("default_variant", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), server_default="", nullable=False),
        sa.Column("winner", sa.Integer(), nullable=True),
        sa.Column("best", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id"),
    )
    op.create_table(
        "ab_variant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("preheader", sa.String(length=500), nullable=False),
        sa.Column("from_name", sa.String(length=200), nullable=False),
        sa.Column("from_email", sa.String(length=320), nullable=False),
        sa.Column("mjml", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["test_id"], ["ab_test.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("test_id", "position"),
    )
    with op.batch_alter_table("send") as batch:
        batch.add_column(sa.Column("variant", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("send") as batch:
        batch.drop_column("variant")
    op.drop_table("ab_variant")
    op.drop_table("ab_test")
