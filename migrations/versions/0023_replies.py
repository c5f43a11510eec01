"""replies: answers to messages, matched to contact and campaign, for the Replies inbox

Revision ID: 0023
Revises: 0025

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "reply",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("send_id", BigId, nullable=True),
        sa.Column("matched_by", sa.String(length=20), nullable=False),
        sa.Column("auto", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("from_name", sa.String(length=200), nullable=False),
        sa.Column("from_email", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("references", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("original_text", sa.Text(), nullable=False),
        sa.Column("original_html", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("forward_to", sa.String(length=320), nullable=False),
        sa.Column("forward_state", sa.String(length=10), nullable=False),
        sa.Column("answer_text", sa.Text(), nullable=False),
        sa.Column("answered_by", sa.String(length=200), nullable=False),
        sa.Column("answer_sender_id", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_state", sa.String(length=10), nullable=False),
        sa.Column("mail_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["answer_sender_id"], ["sender.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_reply_status_time", "reply", ["status", "received_at"], unique=False)
    op.create_index("ix_reply_contact_time", "reply", ["contact_id", "received_at"], unique=False)
    op.create_index("ix_reply_campaign", "reply", ["campaign_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_reply_campaign", table_name="reply")
    op.drop_index("ix_reply_contact_time", table_name="reply")
    op.drop_index("ix_reply_status_time", table_name="reply")
    op.drop_table("reply")
