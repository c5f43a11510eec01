"""Files that ship inside the package: templates, migrations, the gunicorn config — found through the package."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaigns.config import Settings

# Where a checkout keeps them: the fallback for an editable install made before they were packaged, or none at all.
_CHECKOUT = Path(__file__).resolve().parent.parent


def _package_dir(package: str, checkout_name: str) -> Path:
    """The folder of a data package (campaigns.templates, campaigns.migrations) in the installed package."""
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        return _CHECKOUT / checkout_name


def templates_dir() -> Path:
    """The Jinja templates of the admin and the recipient pages."""
    return _package_dir("campaigns.templates", "templates")


def static_dir() -> Path:
    """The admin's static files (CSS, scripts, vendored libraries)."""
    return Path(__file__).resolve().parent / "static"


def starters_dir() -> Path:
    """The MJML starter templates a new campaign can begin from."""
    return Path(__file__).resolve().parent / "composing" / "starters"


def migrations_dir() -> Path:
    """The Alembic script directory (env.py, versions/)."""
    return _package_dir("campaigns.migrations", "migrations")


def alembic_config(database_url: str):
    """An Alembic Config for this database, built in code so an installed package needs no alembic.ini."""
    from alembic.config import Config  # heavy: only migrations need alembic

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["skip_logging"] = True
    return cfg


def migrate(settings: Settings) -> None:
    """Bring the database to the newest schema (alembic upgrade head)."""
    from alembic import command  # heavy, and only `rapport init`, the demo and tests migrate

    cfg = alembic_config(settings.database_url)
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(cfg, "head")
