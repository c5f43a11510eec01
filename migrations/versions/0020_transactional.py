"""transactional send API: template slugs on campaigns, the tx_message table

Revision ID: 0020
Revises: 0027

"""
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _slug(name: str, campaign_id: int) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "template"
    return f"{base}-{campaign_id}"


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("campaign", sa.Column("slug", sa.String(length=100), nullable=True))
    op.create_index(op.f("ix_campaign_slug"), "campaign", ["slug"], unique=True)
    # Every transactional campaign is a template the API can name: existing ones get "<name>-<id>".
    conn = op.get_bind()
    campaign = sa.table("campaign", sa.column("id", sa.Integer), sa.column("name", sa.String),
                        sa.column("kind", sa.String), sa.column("slug", sa.String))
    for cid, name in conn.execute(sa.select(campaign.c.id, campaign.c.name)
                                  .where(campaign.c.kind == "transactional")).all():
        conn.execute(sa.update(campaign).where(campaign.c.id == cid).values(slug=_slug(name or "", cid)))
    op.create_table(
        "tx_message",
        sa.Column("id", BigId, nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", BigId, nullable=True),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("smtp_reply", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_key.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index(op.f("ix_tx_message_campaign_id"), "tx_message", ["campaign_id"], unique=False)
    op.create_index(op.f("ix_tx_message_contact_id"), "tx_message", ["contact_id"], unique=False)
    op.create_index("ix_tx_message_status_created", "tx_message", ["status", "created_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_tx_message_status_created", table_name="tx_message")
    op.drop_index(op.f("ix_tx_message_contact_id"), table_name="tx_message")
    op.drop_index(op.f("ix_tx_message_campaign_id"), table_name="tx_message")
    op.drop_table("tx_message")
    op.drop_index(op.f("ix_campaign_slug"), table_name="campaign")
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("slug")
