"""coupon pools and codes

Revision ID: 0004
Revises: 0003

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "coupon_pool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value_description", sa.String(length=200), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_pool")),
        sa.UniqueConstraint("name", name=op.f("uq_coupon_pool_name")),
    )
    op.create_table(
        "coupon_code",
        sa.Column("id", BigId, nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", BigId, nullable=True),
        sa.Column("send_id", BigId, nullable=True),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_reference", sa.String(length=200), nullable=False),
        sa.Column("redeemed_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name=op.f("fk_coupon_code_campaign_id_campaign"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], name=op.f("fk_coupon_code_contact_id_contact"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["pool_id"], ["coupon_pool.id"], name=op.f("fk_coupon_code_pool_id_coupon_pool"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_code")),
        sa.UniqueConstraint("campaign_id", "contact_id", name=op.f("uq_coupon_code_campaign_id_contact_id")),
        sa.UniqueConstraint("code", name=op.f("uq_coupon_code_code")),
    )
    op.create_index("ix_coupon_code_pool_free", "coupon_code", ["pool_id", "assigned_at", "id"], unique=False)
    op.create_index("ix_coupon_code_contact", "coupon_code", ["contact_id"], unique=False)
    op.create_table(
        "coupon_api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_coupon_api_token_token_hash")),
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("coupon_pool_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_campaign_coupon_pool_id_coupon_pool"), "coupon_pool", ["coupon_pool_id"], ["id"],
                                    ondelete="SET NULL")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_campaign_coupon_pool_id_coupon_pool"), type_="foreignkey")
        batch_op.drop_column("coupon_pool_id")
    op.drop_table("coupon_api_token")
    op.drop_index("ix_coupon_code_contact", table_name="coupon_code")
    op.drop_index("ix_coupon_code_pool_free", table_name="coupon_code")
    op.drop_table("coupon_code")
    op.drop_table("coupon_pool")
