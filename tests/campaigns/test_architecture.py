"""The shape docs/architecture.md describes, checked: no import cycles, imports only downward, one job registry,
small modules, and the transaction rule. Each check is also run on a planted violation to show it can fail."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "campaigns"
MAX_LINES = 400

# Levels, lowest first: a module may import its own level or lower, never higher (docs/architecture.md).
LEVELS: dict[str, int] = {
    **dict.fromkeys(["config", "config_checks", "db", "errors", "logs", "metrics", "resources", "storage",
                     "csvfiles", "models", "runtime", "queueing", "scheduler", "recipient_urls", "addresses", "stops",
                     "dkim_signing", "webhook_events", "outbound"], 0),
    "accounts": 1,
    "contacts": 2,
    "composing": 3,
    "sending": 4,
    **dict.fromkeys(["coupons", "surveys", "feedback", "signup", "automations", "orders", "notes", "post",
                     "archive"], 5),
    "replies": 5,
    **dict.fromkeys(["reports", "ops", "demo", "webhooks"], 6),
    "abtests": 5,
    "transactional": 5,
    "draws": 5,
    "events": 5,
    **dict.fromkeys(["web", "tasks", "capabilities", "cli", "check", "gunicorn_conf", "__main__"], 7),
}
# Package __init__ files hold a docstring only, except blueprint packages, which import their view modules.
INIT_MAY_IMPORT = {"campaigns.web.admin", "campaigns.web.public", "campaigns.web.api"}


@dataclass
class Module:
    name: str
    path: Path
    imports: dict[str, int] = field(default_factory=dict)        # imported campaigns module -> line
    local_imports: list[tuple[int, str]] = field(default_factory=list)   # (line, module) inside functions


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def load(root: Path, package: str = "campaigns") -> dict[str, Module]:
    """Every module of `package` under root with the package modules it imports (function-local ones too)."""
    paths = {_module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}
    modules = {name: Module(name, path) for name, path in paths.items()}
    for name, mod in modules.items():
        tree = ast.parse(mod.path.read_text(), filename=str(mod.path))
        typing_only = _type_checking_lines(tree)
        local_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        is_pkg = mod.path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in typing_only:
                continue
            targets = _targets(name, is_pkg, node, paths)
            for target in targets:
                if target != name:
                    mod.imports.setdefault(target, node.lineno)
            if id(node) in local_nodes:
                mod.local_imports.append((node.lineno, ", ".join(targets) or ast.unparse(node)))
    return modules


def _targets(current: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, known: dict) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = current.split(".") if is_pkg else current.split(".")[:-1]
            parts = parts[:len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    out = []
    for target in names:
        while target and target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in known:
            out.append(target)
    return out


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in modules[v].imports:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return found


def level(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) < 2:
        return None
    return LEVELS.get(parts[1])


def upward_imports(modules: dict[str, Module]) -> list[str]:
    """Imports from a module to a module of a higher level."""
    bad = []
    for mod in modules.values():
        mine = level(mod.name)
        for target, line in mod.imports.items():
            theirs = level(target)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{mod.path.relative_to(ROOT) if mod.path.is_relative_to(ROOT) else mod.path}:{line}: "
                           f"{mod.name} (level {mine}) imports {target} (level {theirs})")
    return bad


def unplaced(modules: dict[str, Module]) -> list[str]:
    return [name for name in modules if "." in name and level(name) is None]


def undeclared_local_imports(modules: dict[str, Module]) -> list[str]:
    """Function-local imports of application code (cycle dodges), or of anything without a comment saying why."""
    bad = []
    for mod in modules.values():
        lines = mod.path.read_text().splitlines()
        for line, target in mod.local_imports:
            text = lines[line - 1]
            before = lines[line - 2].strip() if line >= 2 else ""
            if target.startswith("campaigns"):
                bad.append(f"{mod.name}:{line}: function-local import of {target}")
            elif "#" not in text and not before.startswith("#"):
                bad.append(f"{mod.name}:{line}: function-local import without a comment saying why: {text.strip()}")
    return bad


def long_modules(root: Path, package: str = "campaigns") -> list[str]:
    return [f"{p.relative_to(root)}: {n} lines" for p in sorted((root / package).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES]


def committing_callees(root: Path, package: str = "campaigns") -> list[str]:
    """Functions handed a `session` that commit it: the caller that opened the session owns its transaction."""
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            params = {a.arg for a in func.args.args + func.args.kwonlyargs}
            if "session" not in params:
                continue
            for node in ast.walk(func):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "commit"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "session"):
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    bad.append(f"{where}: {func.name}() commits the session it was given")
    return bad


def busy_inits(modules: dict[str, Module]) -> list[str]:
    bad = []
    for mod in modules.values():
        if mod.path.name != "__init__.py" or mod.name in INIT_MAY_IMPORT or mod.name == "campaigns.models":
            continue
        tree = ast.parse(mod.path.read_text())
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        if body:
            bad.append(f"{mod.name}: holds code; keep package __init__ files to a docstring")
    return bad


# -- the real tree -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    return load(ROOT)


def test_no_import_cycles(tree: dict[str, Module]) -> None:
    assert cycles(tree) == []


def test_imports_only_go_down(tree: dict[str, Module]) -> None:
    assert unplaced(tree) == [], "place new top-level modules/packages in LEVELS and docs/architecture.md"
    assert upward_imports(tree) == []


def test_no_function_local_imports_dodge_the_rules(tree: dict[str, Module]) -> None:
    assert undeclared_local_imports(tree) == []


def test_modules_stay_small() -> None:
    assert long_modules(ROOT) == []


def test_whoever_opens_a_session_commits_it() -> None:
    assert committing_callees(ROOT) == []


def test_package_inits_hold_no_code(tree: dict[str, Module]) -> None:
    assert busy_inits(tree) == []


def test_every_job_has_its_entry_point_and_is_documented() -> None:
    import campaigns.tasks as tasks
    from campaigns import queueing

    doc = (ROOT / "docs" / "architecture.md").read_text()
    entry_points = {name for name, obj in vars(tasks).items()
                    if inspect.isfunction(obj) and obj.__module__ == tasks.__name__ and not name.startswith("_")}
    assert entry_points == {job.value for job in queueing.Job}
    assert set(queueing.RUNS) == set(queueing.Job)
    for job in queueing.Job:
        assert f"`{job.value}`" in doc, f"docs/architecture.md has no line for the job {job.value}"
    for task in queueing.PERIODIC.values():
        assert task.job in queueing.Job
        assert f"`{task.name}`" in doc, f"docs/architecture.md has no line for the periodic task {task.name}"


def test_no_job_is_enqueued_by_a_string_path() -> None:
    pattern = re.compile(r"""\.enqueue(?:_at|_in|_many)?\(\s*["']|prepare_data\(\s*["']""")
    hits = [f"{p.relative_to(ROOT)}:{i}" for base in ("campaigns", "bench") for p in (ROOT / base).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == [], "enqueue through campaigns.queueing with a Job"


# -- the checks catch planted violations ---------------------------------------------------------------------------

def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "campaigns" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_planted_cycle_and_upward_import_are_caught(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "__init__.py": "",
        "contacts/__init__.py": '"""doc"""\n',
        "contacts/a.py": "from campaigns.contacts import b\n",
        "contacts/b.py": "def f():\n    from campaigns.contacts import a\n",
        "runtime.py": "from campaigns.sending import lifecycle\n",
        "sending/__init__.py": "import os\n",
        "sending/lifecycle.py": "def g():\n    import json\n",
        "sending/big.py": "x = 1\n" * (MAX_LINES + 1),
        "sending/service.py": "def save(session):\n    session.commit()\n",
    })
    planted = load(root)
    assert cycles(planted) == [["campaigns.contacts.a", "campaigns.contacts.b"]]
    assert len(upward_imports(planted)) == 1 and "campaigns.runtime (level 0)" in upward_imports(planted)[0]
    local = undeclared_local_imports(planted)
    assert any("function-local import of campaigns.contacts.a" in line for line in local)
    assert any("without a comment" in line for line in local)
    assert long_modules(root) == [f"campaigns/sending/big.py: {MAX_LINES + 1} lines"]
    assert committing_callees(root) == ["campaigns/sending/service.py:2: save() commits the session it was given"]
    assert len(busy_inits(planted)) == 1
