"""mailer/ is a leaf library of readable modules: it must not know Flask, SQLAlchemy or the application, and no
module grows past what one reader can hold in mind."""

import ast
from pathlib import Path

import pytest

MAILER = Path(__file__).resolve().parents[2] / "mailer"
FORBIDDEN = ("flask", "flask_login", "flask_wtf", "sqlalchemy", "campaigns", "rq")
MAX_LINES = 400
MODULES = sorted(p for p in MAILER.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _too_long(root: Path, limit: int = MAX_LINES) -> dict[str, int]:
    """Modules under root (packages included) with more than limit lines, by path relative to root."""
    counts = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    return {name: count for name, count in counts.items() if count > limit}


def _module_id(path: Path) -> str:
    return str(path.relative_to(MAILER))


def test_packages_are_walked() -> None:
    """The checks below see the modules inside mailer's packages, not only the top-level files."""
    assert any(p.parent != MAILER for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=_module_id)
def test_mailer_module_imports_no_application_code(path: Path) -> None:
    assert not (_imports(path) & set(FORBIDDEN)), f"{_module_id(path)} imports {_imports(path) & set(FORBIDDEN)}"


def test_the_check_would_catch_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from campaigns.models import Contact\nimport flask\n")
    assert _imports(bad) & set(FORBIDDEN) == {"campaigns", "flask"}


def test_no_mailer_module_is_longer_than_the_limit() -> None:
    assert _too_long(MAILER) == {}


def test_the_length_check_would_catch_a_long_module_in_a_package(tmp_path: Path) -> None:
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert _too_long(tmp_path) == {str(Path("pkg") / "long.py"): MAX_LINES + 1}
