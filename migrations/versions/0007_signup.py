"""double opt-in signup and consent

Revision ID: 0007
Revises: 0006

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "signup_form",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("intro", sa.Text(), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signup_form")),
        sa.UniqueConstraint("name", name=op.f("uq_signup_form_name")),
        sa.UniqueConstraint("public_id", name=op.f("uq_signup_form_public_id")),
    )
    op.create_table(
        "signup_form_topic",
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["form_id"], ["signup_form.id"], name=op.f("fk_signup_form_topic_form_id_signup_form"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["topic_id"], ["topic.id"], name=op.f("fk_signup_form_topic_topic_id_topic"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("form_id", "topic_id", name=op.f("pk_signup_form_topic")),
    )
    op.create_table(
        "signup",
        sa.Column("id", BigId, nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("topic_ids", sa.JSON(), nullable=False),
        sa.Column("topic_names", sa.JSON(), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_version", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("mailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mails", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirm_ip", sa.String(length=64), nullable=False),
        sa.Column("confirm_user_agent", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], name=op.f("fk_signup_contact_id_contact"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["form_id"], ["signup_form.id"], name=op.f("fk_signup_form_id_signup_form"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signup")),
    )
    op.create_index(op.f("ix_signup_contact_id"), "signup", ["contact_id"], unique=False)
    op.create_index("ix_signup_form_requested", "signup", ["form_id", "requested_at"], unique=False)
    op.create_index("ix_signup_status_expires", "signup", ["status", "expires_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_signup_status_expires", table_name="signup")
    op.drop_index("ix_signup_form_requested", table_name="signup")
    op.drop_index(op.f("ix_signup_contact_id"), table_name="signup")
    op.drop_table("signup")
    op.drop_table("signup_form_topic")
    op.drop_table("signup_form")
