"""Import rules: only the Redis plumbing imports redis; the core imports only the stdlib."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pygents
import pygents_dist

CORE = Path(pygents.__file__).parent
DIST = Path(pygents_dist.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports kept with dots)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def top(name: str) -> str:
    return name.split(".", 1)[0]


def sources(package: Path) -> list[Path]:
    files = sorted(package.rglob("*.py"))
    assert files, package
    return files


def test_only_the_redis_plumbing_imports_redis() -> None:
    importers = {
        path.relative_to(DIST).as_posix()
        for path in sources(DIST)
        if any(top(name) == "redis" for name in imported_modules(path))
    }
    assert importers == {"_transport.py", "_connections.py", "_redis_errors.py"}


def test_core_imports_only_the_standard_library_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"pygents", "__future__"}
    offenders = {
        f"{path.relative_to(CORE).as_posix()}: {name}"
        for path in sources(CORE)
        for name in imported_modules(path)
        if not name.startswith(".") and top(name) not in allowed
    }
    assert offenders == set()


def test_core_never_imports_dist() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sources(CORE)
        for name in imported_modules(path)
        if top(name) == "pygents_dist"
    }
    assert offenders == set()
