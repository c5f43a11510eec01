"""REST API: API keys, idempotency records, and an order's source and external id (unique together)

Revision ID: 0018
Revises: 0017

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("rate_limit", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("id", BigId, nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_key.id"], name=op.f("fk_idempotency_record_api_key_id_api_key"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_record")),
        sa.UniqueConstraint("api_key_id", "key", name=op.f("uq_idempotency_record_api_key_id_key")),
    )
    op.create_index("ix_idempotency_record_created", "idempotency_record", ["created_at"])
    with op.batch_alter_table("order") as batch:
        batch.add_column(sa.Column("source", sa.String(length=20), server_default="", nullable=False))
        batch.add_column(sa.Column("external_id", sa.String(length=100), nullable=True))
        batch.create_unique_constraint(batch.f("uq_order_source_external_id"), ["source", "external_id"])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("order") as batch:
        batch.drop_constraint(batch.f("uq_order_source_external_id"), type_="unique")
        batch.drop_column("external_id")
        batch.drop_column("source")
    op.drop_index("ix_idempotency_record_created", table_name="idempotency_record")
    op.drop_table("idempotency_record")
    op.drop_table("api_key")
