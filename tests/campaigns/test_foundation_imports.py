"""The foundation imports no capability, accounts (the lowest capability) imports no other one, and only entry
points import the web app factory. Function-local imports count: they are edges all the same."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.campaigns.test_architecture import LEVELS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "campaigns"
# The foundation is level 0 of the layer map (one list: tests/campaigns/test_architecture.py and docs/architecture.md).
FOUNDATION = {name for name, level in LEVELS.items() if level == 0}


def _module(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every campaigns.* module or package path imported anywhere in the file (absolute and relative)."""
    module = _module(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.update(f"{base}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("campaigns.")}


def top(name: str) -> str:
    """The first part below campaigns: a foundation module, a capability package, or an entry point."""
    return name.split(".")[1] if "." in name else ""


def test_the_foundation_imports_no_capability() -> None:
    wrong = {f"{_module(p)} -> {name}" for p in PACKAGE.rglob("*.py") if top(_module(p)) in FOUNDATION
             for name in imports_of(p) if top(name) not in FOUNDATION}
    assert sorted(wrong) == []


def test_accounts_imports_only_the_foundation_and_itself() -> None:
    wrong = {f"{_module(p)} -> {name}" for p in (PACKAGE / "accounts").rglob("*.py")
             for name in imports_of(p) if top(name) not in FOUNDATION | {"accounts"}}
    assert sorted(wrong) == []


def test_only_entry_points_import_the_app_factory() -> None:
    importers = {_module(p) for p in PACKAGE.rglob("*.py")
                 if any(name.startswith("campaigns.web.app") for name in imports_of(p))}
    assert importers <= {"campaigns.cli", "campaigns.check"}


def test_a_planted_local_upward_import_is_found(tmp_path: Path) -> None:
    planted = tmp_path / "campaigns" / "metrics.py"
    planted.parent.mkdir()
    planted.write_text("def f():\n    from .ops import liveness\n", encoding="utf-8")
    found = imports_of(planted, tmp_path)
    assert found == {"campaigns.ops.liveness"}
    assert {top(name) for name in found} - FOUNDATION == {"ops"}
