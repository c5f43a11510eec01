"""Alembic environment: migrates the database named by Rapport's settings (or an explicit connection)."""

from logging.config import fileConfig

from alembic import context

from campaigns import models  # noqa: F401 - registers every table on Base.metadata
from campaigns.config import from_env
from campaigns.db import Base, make_engine

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    url = config.attributes.get("database_url") or from_env().database_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("database_url") or from_env().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    # render_as_batch lets later migrations alter tables on SQLite too. A batch alteration copies the table and
    # drops the old one; with foreign keys enforced that DROP would cascade-delete every referencing row (send rows
    # of a rebuilt campaign table), so SQLite migrates with them off. The pragma is a no-op inside a transaction,
    # hence set before Alembic begins.
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.commit()   # end any transaction already begun: SQLite ignores the pragma inside one
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            connection.commit()
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
