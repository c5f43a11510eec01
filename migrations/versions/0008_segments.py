"""saved segments

Revision ID: 0008
Revises: 0007

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "segment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment")),
        sa.UniqueConstraint("name", name=op.f("uq_segment_name")),
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segment_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_campaign_segment_id_segment"), "segment", ["segment_id"], ["id"],
                                    ondelete="SET NULL")
    op.create_index("ix_contact_first_name_lower", "contact", [sa.text("lower(first_name)")], unique=False)
    op.create_index("ix_contact_last_name_lower", "contact", [sa.text("lower(last_name)")], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_contact_last_name_lower", table_name="contact")
    op.drop_index("ix_contact_first_name_lower", table_name="contact")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_campaign_segment_id_segment"), type_="foreignkey")
        batch_op.drop_column("segment_id")
    op.drop_table("segment")
