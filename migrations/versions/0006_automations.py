"""automations and occurrences

Revision ID: 0006
Revises: 0005

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "automation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("date_field", sa.String(length=120), nullable=False),
        sa.Column("days_before", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=True),
        sa.Column("day", sa.Integer(), nullable=True),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("inactive_days", sa.Integer(), nullable=False),
        sa.Column("send_minute", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation")),
        sa.UniqueConstraint("name", name=op.f("uq_automation_name")),
    )
    op.create_table(
        "automation_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("automation_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("delay_days", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["automation_id"], ["automation.id"],
                                name=op.f("fk_automation_step_automation_id_automation"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["template_id"], ["campaign.id"],
                                name=op.f("fk_automation_step_template_id_campaign"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_step")),
        sa.UniqueConstraint("automation_id", "position", name=op.f("uq_automation_step_automation_id_position")),
    )
    op.create_table(
        "automation_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("automation_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("occurrence_date", sa.Date(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["automation_id"], ["automation.id"],
                                name=op.f("fk_automation_run_automation_id_automation"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"],
                                name=op.f("fk_automation_run_campaign_id_campaign"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["step_id"], ["automation_step.id"],
                                name=op.f("fk_automation_run_step_id_automation_step"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_run")),
        sa.UniqueConstraint("step_id", "occurrence_date", name=op.f("uq_automation_run_step_id_occurrence_date")),
    )
    op.create_index("ix_automation_run_automation", "automation_run", ["automation_id", "occurrence_date"],
                    unique=False)
    op.create_table(
        "automation_occurrence",
        sa.Column("id", BigId, nullable=False),
        sa.Column("automation_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("occurrence_date", sa.Date(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["automation_id"], ["automation.id"],
                                name=op.f("fk_automation_occurrence_automation_id_automation"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"],
                                name=op.f("fk_automation_occurrence_contact_id_contact"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["automation_run.id"],
                                name=op.f("fk_automation_occurrence_run_id_automation_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_occurrence")),
        sa.UniqueConstraint("automation_id", "contact_id", "occurrence_date",
                            name=op.f("uq_automation_occurrence_automation_id_contact_id_occurrence_date")),
    )
    op.create_index("ix_automation_occurrence_run", "automation_occurrence", ["run_id", "contact_id"], unique=False)
    op.create_index("ix_automation_occurrence_contact", "automation_occurrence",
                    ["contact_id", "automation_id", "occurrence_date"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_automation_occurrence_contact", table_name="automation_occurrence")
    op.drop_index("ix_automation_occurrence_run", table_name="automation_occurrence")
    op.drop_table("automation_occurrence")
    op.drop_index("ix_automation_run_automation", table_name="automation_run")
    op.drop_table("automation_run")
    op.drop_table("automation_step")
    op.drop_table("automation")
