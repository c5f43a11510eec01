"""feedback loop: suppression list, event classification and idempotency, contact preferences, relay and SMTP code

Revision ID: 0002
Revises: 0001

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "suppression",
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name=op.f("pk_suppression")),
    )
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("engagement_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("frequency", sa.String(length=20), server_default="every", nullable=False))
        batch_op.add_column(sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relay", sa.String(length=50), server_default="", nullable=False))
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.add_column(sa.Column("smtp_code", sa.Integer(), nullable=True))
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("machine", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("fetcher", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_event_dedupe_key"), ["dedupe_key"])
        batch_op.create_index("ix_event_type_time", ["type", "occurred_at", "contact_id"], unique=False)
        batch_op.create_index("ix_event_send_type", ["send_id", "type"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_send_type")
        batch_op.drop_index("ix_event_type_time")
        batch_op.drop_constraint(batch_op.f("uq_event_dedupe_key"), type_="unique")
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("fetcher")
        batch_op.drop_column("machine")
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.drop_column("smtp_code")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("relay")
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_column("paused_until")
        batch_op.drop_column("frequency")
        batch_op.drop_column("engagement_at")
    op.drop_table("suppression")
