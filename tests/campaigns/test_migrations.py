"""The Alembic chain builds exactly the models, on SQLite and on PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from campaigns.db import Base


def test_migrated_schema_matches_models(runtime) -> None:  # noqa: ANN001
    with runtime.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
