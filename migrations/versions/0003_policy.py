"""ratio cap and frequency policy

Revision ID: 0003
Revises: 0002

"""
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "policy_ledger",
        sa.Column("send_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["send_id"], ["send.id"], name=op.f("fk_policy_ledger_send_id_send"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("send_id", name=op.f("pk_policy_ledger")),
    )
    op.create_index("ix_policy_ledger_contact_time", "policy_ledger", ["contact_id", "sent_at", "kind"],
                    unique=False)
    op.create_table(
        "policy_config",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("ratio_marketing", sa.Integer(), nullable=False),
        sa.Column("ratio_nurture", sa.Integer(), nullable=False),
        sa.Column("min_nurture_before_marketing", sa.Integer(), nullable=False),
        sa.Column("marketing_per_week", sa.Integer(), nullable=False),
        sa.Column("messages_per_day", sa.Integer(), nullable=False),
        sa.Column("hold_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_config")),
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=20), server_default="", nullable=False))
    # Mail sent before the policy existed still counts: copy the last 31 days of non-transactional sends.
    bind = op.get_bind()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    if bind.dialect.name == "sqlite":
        since = since.replace(tzinfo=None)
    bind.execute(sa.text(
        "INSERT INTO policy_ledger (send_id, contact_id, kind, sent_at) "
        "SELECT s.id, s.contact_id, c.kind, s.sent_at FROM send s JOIN campaign c ON c.id = s.campaign_id "
        "WHERE s.status = 'sent' AND s.sent_at >= :since AND c.kind <> 'transactional'"
    ).bindparams(sa.bindparam("since", since, type_=sa.DateTime())))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.drop_column("reason")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("valid_until")
    op.drop_table("policy_config")
    op.drop_index("ix_policy_ledger_contact_time", table_name="policy_ledger")
    op.drop_table("policy_ledger")
