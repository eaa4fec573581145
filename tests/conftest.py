"""Shared fixtures: every test starts and ends with empty registries."""

from collections.abc import Iterator

import pytest

from pygents import AgentRegistry, HookRegistry, ToolRegistry


def _clear_registries() -> None:
    ToolRegistry.clear()
    AgentRegistry.clear()
    HookRegistry.clear()


@pytest.fixture(autouse=True)
def _reset_registries() -> Iterator[None]:
    _clear_registries()
    yield
    _clear_registries()
