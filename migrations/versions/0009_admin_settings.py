"""run-time settings and login throttling

Revision ID: 0009
Revises: 0008

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "app_setting",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_app_setting")),
    )
    op.create_table(
        "login_failure",
        sa.Column("id", BigId, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    op.create_index(op.f("ix_login_failure_at"), "login_failure", ["at"], unique=False)
    op.create_index("ix_login_failure_email_at", "login_failure", ["email", "at"], unique=False)
    op.create_index("ix_login_failure_ip_at", "login_failure", ["ip", "at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_login_failure_ip_at", table_name="login_failure")
    op.drop_index("ix_login_failure_email_at", table_name="login_failure")
    op.drop_index(op.f("ix_login_failure_at"), table_name="login_failure")
    op.drop_table("login_failure")
    op.drop_table("app_setting")
