"""indexes for the admin at scale: contact.timezone (zones in use), draw_entry (draw_id, id) (newest entries)

Revision ID: 0031
Revises: 0028

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0031"
down_revision: str | Sequence[str] | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_contact_timezone", "contact", ["timezone"], unique=False)
    op.create_index("ix_draw_entry_draw_id", "draw_entry", ["draw_id", "id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_draw_entry_draw_id", table_name="draw_entry")
    op.drop_index("ix_contact_timezone", table_name="contact")
