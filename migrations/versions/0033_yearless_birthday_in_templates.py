"""templates made from the "Is this still right?" starter read the birthday's day and month from birthday_day and
birthday_month: `contact.birthday` is now "--MM-DD" for a birthday without a year, which the starter's old slices
would have shown as ".-1."

Revision ID: 0033
Revises: 0032

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033"
down_revision: str | Sequence[str] | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "{{ contact.birthday[8:10] }}.{{ contact.birthday[5:7] }}."
NEW = "{{ contact.birthday_day }}.{{ contact.birthday_month }}."
COLUMNS = (("campaign", "mjml"), ("campaign", "text_body"), ("ab_variant", "mjml"))


def _swap(old: str, new: str) -> None:
    for table, column in COLUMNS:
        op.execute(sa.text(f"UPDATE {table} SET {column} = replace({column}, :old, :new) "
                           f"WHERE {column} LIKE :pattern").bindparams(old=old, new=new, pattern=f"%{old}%"))


def upgrade() -> None:
    """Upgrade schema."""
    _swap(OLD, NEW)


def downgrade() -> None:
    """Downgrade schema."""
    _swap(NEW, OLD)
