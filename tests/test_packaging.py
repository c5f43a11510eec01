"""The wheel's package list covers every folder of code and data, and packaged files are found through the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

from campaigns.resources import alembic_config, migrations_dir, templates_dir

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"templates": "campaigns.templates", "migrations": "campaigns.migrations"}


def folders_to_ship() -> set[str]:
    """Every folder under campaigns/, mailer/, templates/ and migrations/ that holds files, as a package name."""
    names = set()
    for top in ("campaigns", "mailer", *MAPPED):
        for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(f.is_file() for f in folder.iterdir()):
                continue
            parts = folder.relative_to(ROOT).parts
            names.add(".".join((MAPPED.get(parts[0], parts[0]), *parts[1:])))
    return names


def test_pyproject_lists_every_package_and_data_folder() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == folders_to_ship()
    assert config["package-dir"] == {"": ".", **{pkg: folder for folder, pkg in MAPPED.items()}}


def test_every_data_file_is_matched_by_package_data() -> None:
    """A file kind package-data does not name (an .svg in static/, say) would be missing from the wheel."""
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    left_out = []
    for top in ("campaigns", "mailer", *MAPPED):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".py", ".pyc"):
                if not any(fnmatch(path.name, pattern) for pattern in patterns):
                    left_out.append(str(path.relative_to(ROOT)))
    assert left_out == []


def test_templates_and_migrations_are_found_through_the_package() -> None:
    assert (templates_dir() / "admin" / "login.html").is_file()
    assert (templates_dir() / "public" / "error.html").is_file()
    assert (migrations_dir() / "env.py").is_file()
    assert alembic_config("sqlite://").get_main_option("script_location") == str(migrations_dir())


def test_console_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"rapport": "campaigns.cli:main", "rapport-worker": "worker:main"}
