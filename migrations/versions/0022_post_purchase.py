"""post-purchase automations: order trigger filters, step delays in hours, per-order occurrences, order product tags,
an index to find a run by its campaign

Revision ID: 0022
Revises: 0019

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("automation") as batch:
        batch.add_column(sa.Column("min_amount", sa.Numeric(12, 2), nullable=True))
        batch.add_column(sa.Column("max_amount", sa.Numeric(12, 2), nullable=True))
        batch.add_column(sa.Column("product_tag", sa.String(length=100), server_default="", nullable=False))
        batch.add_column(sa.Column("first_order_only", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("automation_step") as batch:
        batch.add_column(sa.Column("delay_hours", sa.Integer(), server_default="0", nullable=False))
    op.create_index("ix_automation_run_campaign", "automation_run", ["campaign_id"], unique=False)
    op.create_table(
        "order_tag",
        sa.Column("order_id", BigId, nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["order.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("order_id", "tag"),
    )
    op.create_index("ix_order_tag_tag", "order_tag", ["tag", "order_id"], unique=False)
    op.create_table(
        "automation_order_occurrence",
        sa.Column("id", BigId, nullable=False),
        sa.Column("automation_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("order_id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["automation_id"], ["automation.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_id"], ["automation_step.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["order_id"], ["order.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["automation_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("step_id", "order_id"),
    )
    op.create_index("ix_automation_order_occurrence_run", "automation_order_occurrence", ["run_id", "contact_id"],
                    unique=False)
    op.create_index("ix_automation_order_occurrence_order", "automation_order_occurrence",
                    ["automation_id", "order_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_automation_order_occurrence_order", table_name="automation_order_occurrence")
    op.drop_index("ix_automation_order_occurrence_run", table_name="automation_order_occurrence")
    op.drop_table("automation_order_occurrence")
    op.drop_index("ix_order_tag_tag", table_name="order_tag")
    op.drop_table("order_tag")
    op.drop_index("ix_automation_run_campaign", table_name="automation_run")
    with op.batch_alter_table("automation_step") as batch:
        batch.drop_column("delay_hours")
    with op.batch_alter_table("automation") as batch:
        batch.drop_column("first_order_only")
        batch.drop_column("product_tag")
        batch.drop_column("max_amount")
        batch.drop_column("min_amount")
