"""send claims: index (campaign, status, contact) so a claim reads only its batch's rows, in order

Revision ID: 0012
Revises: 0011

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_send_campaign_status_contact", "send", ["campaign_id", "status", "contact_id"])
    op.drop_index("ix_send_campaign_status", table_name="send")


def downgrade() -> None:
    """Downgrade schema."""
    op.create_index("ix_send_campaign_status", "send", ["campaign_id", "status"])
    op.drop_index("ix_send_campaign_status_contact", table_name="send")
