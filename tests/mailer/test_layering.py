"""mailer/ is a leaf library: it must not know Flask, SQLAlchemy or the application."""

import ast
from pathlib import Path

import pytest

MAILER = Path(__file__).resolve().parents[2] / "mailer"
FORBIDDEN = ("flask", "flask_login", "flask_wtf", "sqlalchemy", "campaigns", "rq")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(MAILER.glob("*.py")), ids=lambda p: p.name)
def test_mailer_module_imports_no_application_code(path: Path) -> None:
    assert not (_imports(path) & set(FORBIDDEN)), f"{path.name} imports {_imports(path) & set(FORBIDDEN)}"


def test_the_check_would_catch_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from campaigns.models import Contact\nimport flask\n")
    assert _imports(bad) & set(FORBIDDEN) == {"campaigns", "flask"}
