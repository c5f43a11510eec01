"""surveys and answers

Revision ID: 0005
Revises: 0004

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "survey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("intro", sa.Text(), nullable=False),
        sa.Column("thanks", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey")),
        sa.UniqueConstraint("name", name=op.f("uq_survey_name")),
    )
    op.create_table(
        "survey_question",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("prompt", sa.String(length=500), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["survey_id"], ["survey.id"], name=op.f("fk_survey_question_survey_id_survey"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_question")),
        sa.UniqueConstraint("survey_id", "position", name=op.f("uq_survey_question_survey_id_position")),
    )
    op.create_table(
        "survey_answer",
        sa.Column("id", BigId, nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("send_id", BigId, nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name=op.f("fk_survey_answer_campaign_id_campaign"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], name=op.f("fk_survey_answer_contact_id_contact"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["question_id"], ["survey_question.id"],
                                name=op.f("fk_survey_answer_question_id_survey_question"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["survey_id"], ["survey.id"], name=op.f("fk_survey_answer_survey_id_survey"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_answer")),
        sa.UniqueConstraint("send_id", "question_id", name=op.f("uq_survey_answer_send_id_question_id")),
    )
    op.create_index("ix_survey_answer_question_value", "survey_answer", ["survey_id", "position", "value", "contact_id"],
                    unique=False)
    op.create_index("ix_survey_answer_contact", "survey_answer", ["contact_id"], unique=False)
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("survey_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_campaign_survey_id_survey"), "survey", ["survey_id"], ["id"],
                                    ondelete="SET NULL")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_campaign_survey_id_survey"), type_="foreignkey")
        batch_op.drop_column("survey_id")
    op.drop_index("ix_survey_answer_contact", table_name="survey_answer")
    op.drop_index("ix_survey_answer_question_value", table_name="survey_answer")
    op.drop_table("survey_answer")
    op.drop_table("survey_question")
    op.drop_table("survey")
