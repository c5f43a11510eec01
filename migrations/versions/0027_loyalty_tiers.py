"""loyalty tiers: tier definitions, tier changes, the contact's tier, tier-only coupon pools

Revision ID: 0027
Revises: 0024

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "loyalty_tier",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("min_value", sa.Numeric(12, 2), nullable=False),
        sa.Column("min_orders", sa.Integer(), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("rank"),
    )
    op.create_table(
        "tier_change",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("from_tier", sa.String(length=50), nullable=False),
        sa.Column("to_tier", sa.String(length=50), nullable=False),
        sa.Column("rank_from", sa.Integer(), nullable=False),
        sa.Column("rank_to", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tier_change_contact", "tier_change", ["contact_id", "changed_at"], unique=False)
    op.create_index("ix_tier_change_time", "tier_change", ["changed_at", "rank_to"], unique=False)
    with op.batch_alter_table("contact") as batch:
        batch.add_column(sa.Column("tier", sa.String(length=50), server_default="", nullable=False))
        batch.create_index(batch.f("ix_contact_tier"), ["tier"], unique=False)
    with op.batch_alter_table("coupon_pool") as batch:
        batch.add_column(sa.Column("tiers", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("coupon_pool") as batch:
        batch.drop_column("tiers")
    with op.batch_alter_table("contact") as batch:
        batch.drop_index(batch.f("ix_contact_tier"))
        batch.drop_column("tier")
    op.drop_index("ix_tier_change_time", table_name="tier_change")
    op.drop_index("ix_tier_change_contact", table_name="tier_change")
    op.drop_table("tier_change")
    op.drop_table("loyalty_tier")
