"""A core-only install (no ``dist`` extra) keeps pytest working in a user's project.

pygents ships the ``pytest11`` entry point of ``pygents_dist.pytest_plugin``, so every pytest
run of a project that installed pygents loads it, with or without redis and msgpack. These
tests install this repository with ``pip install --no-deps`` into a fresh virtualenv that
has only pytest (no ``--system-site-packages``: nothing of ours leaks in) and run pytest on a
small project there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
USER_TESTS = """
import asyncio

from pygents import Agent, Turn, tool


def test_core_only() -> None:
    @tool
    async def add(a: int, b: int) -> int:
        return a + b

    async def main() -> list[int]:
        agent = Agent("adder", "Adds", [add])
        await agent.put(Turn("add", kwargs={"a": 1, "b": 2}))
        return [value async for _turn, value in agent.run()]

    assert asyncio.run(main()) == [3]


def test_offline_fixture(key_prefix: str) -> None:
    assert key_prefix.startswith("t")
"""
REDIS_TEST = """
def test_needs_redis(redis_url: str) -> None:
    pass
"""
HINT = "install pygents[dist]: pip install 'pygents[dist]'"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    """This process's environment, less what would point the child at our own venv, and
    pytest's signs of a CI run (``CI``, ``BUILD_NUMBER``: its short summary then repeats each
    error's text in full, which the one-line check below would count twice)."""
    dropped = {"PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "REDIS_URL"}
    dropped |= {"CI", "BUILD_NUMBER"}
    return {k: v for k, v in os.environ.items() if k not in dropped}


def _run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def core_only_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The python of a fresh venv holding pytest and this repository, without any extra."""
    root = tmp_path_factory.mktemp("core-only")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    source = root / "source"  # a copy, so that the build leaves the worktree alone
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pygents", "pygents_dist"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for args in (("pytest",), ("--no-deps", str(source))):
        installed = _run(python, "-m", "pip", "install", "-q", *args, cwd=root)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    yield python


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder with tests that use only the core."""
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    return tmp_path


def test_the_venv_has_neither_redis_nor_msgpack(core_only_python: Path, project: Path) -> None:
    probe = "import importlib.util as u; print(u.find_spec('redis'), u.find_spec('msgpack'))"
    result = _run(core_only_python, "-c", probe, cwd=project)
    assert result.stdout.split() == ["None", "None"], result.stderr


def test_pytest_collects_and_passes_a_core_only_project(
    core_only_python: Path, project: Path
) -> None:
    result = _run(core_only_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_pytest_help_lists_the_plugin_options(core_only_python: Path, project: Path) -> None:
    result = _run(core_only_python, "-m", "pytest", "--help", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--soak" in result.stdout


def test_a_redis_fixture_fails_with_one_line_to_install_the_extra(
    core_only_python: Path, project: Path
) -> None:
    (project / "test_redis.py").write_text(REDIS_TEST)
    result = _run(core_only_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed, 1 error" in result.stdout
    # The error's text: one line, no traceback (the short summary repeats it, in full where
    # pytest does not truncate it: with CI set).
    hint_lines = [
        line
        for line in result.stdout.splitlines()
        if HINT in line and not line.startswith("ERROR test_redis.py::")
    ]
    assert len(hint_lines) == 1, result.stdout
    assert "redis, msgpack not installed" in hint_lines[0]
    assert "Traceback" not in result.stdout
    assert "ModuleNotFoundError" not in result.stdout + result.stderr


def test_importing_the_packages_loads_only_the_standard_library(
    core_only_python: Path, project: Path
) -> None:
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pygents, pygents.context, pygents_dist\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m.split('.')[0] not in sys.stdlib_module_names\n"
        "             and m.split('.')[0] not in ('pygents', 'pygents_dist')))\n"
        "import pytest\n"
        "before = set(sys.modules)\n"
        "import pygents_dist.pytest_plugin\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    result = _run(core_only_python, "-c", script, cwd=project)
    assert result.returncode == 0, result.stderr
    third_party, by_the_plugin = result.stdout.splitlines()
    assert third_party == "[]"
    assert by_the_plugin == "['pygents_dist.pytest_plugin']"
