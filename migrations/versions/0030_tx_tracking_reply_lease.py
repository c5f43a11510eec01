"""transactional tracking and reply-mail lease: event.tx_message_id, reply.mail_lease_until

Revision ID: 0030
Revises: 0029

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | Sequence[str] | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("event", sa.Column("tx_message_id", BigId, nullable=True))
    op.create_index("ix_event_tx_type", "event", ["tx_message_id", "type"], unique=False)
    op.add_column("reply", sa.Column("mail_lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("reply") as batch:
        batch.drop_column("mail_lease_until")
    op.drop_index("ix_event_tx_type", table_name="event")
    with op.batch_alter_table("event") as batch:
        batch.drop_column("tx_message_id")
