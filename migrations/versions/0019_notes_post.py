"""notes on contacts; letters and cards by post (print runs, letters sent, the no-post choice)

Revision ID: 0019
Revises: 0018

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "note",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["admin_user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_note_contact_time", "note", ["contact_id", "created_at"], unique=False)
    op.create_table(
        "post_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("layout", sa.String(length=20), nullable=False),
        sa.Column("label_sheet", sa.String(length=10), nullable=False),
        sa.Column("return_address", sa.Text(), nullable=False),
        sa.Column("qr_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("letters", sa.Integer(), nullable=False),
        sa.Column("rendered", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("no_address", sa.Integer(), nullable=False),
        sa.Column("no_post", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_post_run_campaign_id"), "post_run", ["campaign_id"], unique=False)
    op.create_table(
        "post_letter",
        sa.Column("id", BigId, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("send_id", BigId, nullable=True),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("coupon_code", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["post_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "contact_id"),
    )
    op.create_index(op.f("ix_post_letter_contact_id"), "post_letter", ["contact_id"], unique=False)
    op.create_index("ix_post_letter_run_page", "post_letter", ["run_id", "page"], unique=False)
    op.create_table(
        "post_opt_out",
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("contact_id"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("post_opt_out")
    op.drop_index("ix_post_letter_run_page", table_name="post_letter")
    op.drop_index(op.f("ix_post_letter_contact_id"), table_name="post_letter")
    op.drop_table("post_letter")
    op.drop_index(op.f("ix_post_run_campaign_id"), table_name="post_run")
    op.drop_table("post_run")
    op.drop_index("ix_note_contact_time", table_name="note")
    op.drop_table("note")
