"""weekly/monthly digest runs and their items

Revision ID: 0010
Revises: 0009

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "digest_run",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name=op.f("fk_digest_run_campaign_id_campaign"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_digest_run")),
    )
    op.create_table(
        "digest_item",
        sa.Column("send_id", BigId, nullable=False),
        sa.Column("digest_campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(["digest_campaign_id"], ["campaign.id"],
                                name=op.f("fk_digest_item_digest_campaign_id_campaign"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["send_id"], ["send.id"], name=op.f("fk_digest_item_send_id_send"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("send_id", name=op.f("pk_digest_item")),
    )
    op.create_index("ix_digest_item_campaign_contact", "digest_item", ["digest_campaign_id", "contact_id"],
                    unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_digest_item_campaign_contact", table_name="digest_item")
    op.drop_table("digest_item")
    op.drop_table("digest_run")
