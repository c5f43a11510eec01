"""public archive of campaigns per topic; RSS-to-email (feed mailings and the feed items they have seen)

Revision ID: 0026
Revises: 0023

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "archived_issue",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["topic_id"], ["topic.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id"),
        sa.UniqueConstraint("topic_id", "slug"),
    )
    op.create_index(op.f("ix_archived_issue_topic_id"), "archived_issue", ["topic_id"], unique=False)
    op.create_table(
        "feed_mailing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("feed_url", sa.Text(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("every_hours", sa.Integer(), nullable=False),
        sa.Column("max_items", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("etag", sa.String(length=500), server_default="", nullable=False),
        sa.Column("last_modified", sa.String(length=100), server_default="", nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["template_id"], ["campaign.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index(op.f("ix_feed_mailing_next_check_at"), "feed_mailing", ["next_check_at"], unique=False)
    op.create_table(
        "feed_item",
        sa.Column("id", BigId, nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("summary_html", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["mailing_id"], ["feed_mailing.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailing_id", "key"),
    )
    op.create_index(op.f("ix_feed_item_campaign_id"), "feed_item", ["campaign_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_feed_item_campaign_id"), table_name="feed_item")
    op.drop_table("feed_item")
    op.drop_index(op.f("ix_feed_mailing_next_check_at"), table_name="feed_mailing")
    op.drop_table("feed_mailing")
    op.drop_index(op.f("ix_archived_issue_topic_id"), table_name="archived_issue")
    op.drop_table("archived_issue")
