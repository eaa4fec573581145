"""The core's modules: each imports alone, loads only the standard library, says what it owns,
and hook state has one owner (``pygents.hooks``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pygents
import pygents.hooks
import pygents.registry

CORE = Path(pygents.__file__).parent
REPO_ROOT = CORE.parent
SOURCES = sorted(CORE.glob("*.py"))
MODULES = ["pygents" if path.stem == "__init__" else f"pygents.{path.stem}" for path in SOURCES]

# Imports ``module`` in a fresh interpreter; prints the non-stdlib modules it loaded.
PROBE = """
import importlib, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
loaded = set(sys.modules) - before
print(sorted(m for m in loaded
             if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "pygents"))
"""


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_and_loads_only_the_standard_library(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_each_module_opens_with_a_docstring(path: Path) -> None:
    docstring = ast.get_docstring(_tree(path))
    assert docstring, f"{path.name} has no module docstring"
    assert len(docstring.split()) >= 5, f"{path.name}: say what the module owns"


def test_only_hooks_touches_the_global_hook_state() -> None:
    users = {
        path.name
        for path in SOURCES
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Name | ast.Attribute)
        and (node.id if isinstance(node, ast.Name) else node.attr) == "_GLOBAL_HOOKS"
    }
    assert users == {"hooks.py"}


def test_registry_is_imported_only_for_tools_and_agents() -> None:
    allowed = {"ToolRegistry", "AgentRegistry", "INSTANCE_SEPARATOR", "split_instance"}
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module == "pygents.registry":
                names = {alias.name for alias in node.names}
                assert names <= allowed, f"{path.name}: {names}"


def test_registry_reexports_the_hook_registry_for_0_7_0_imports() -> None:
    from pygents.registry import HookRegistry

    assert HookRegistry is pygents.hooks.HookRegistry is pygents.HookRegistry
    assert "HookRegistry" in pygents.registry.__all__
