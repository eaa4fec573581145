"""Public surface: ``__all__`` is sorted and complete, and the core imports only the stdlib."""

import subprocess
import sys
from pathlib import Path

import pygents
import pygents.context

PUBLIC_NAMES = {
    "Agent",
    "AgentHook",
    "AgentRegistry",
    "AsyncGenTool",
    "Backoff",
    "BaseTool",
    "ContextItem",
    "ContextPool",
    "ContextPoolHook",
    "ContextQueue",
    "ContextQueueHook",
    "Hook",
    "HookMetadata",
    "HookRegistry",
    "Missed",
    "Rate",
    "Retry",
    "SafeExecutionError",
    "Schedule",
    "ScheduleEntry",
    "StopReason",
    "Tool",
    "ToolHook",
    "ToolMetadata",
    "ToolRegistry",
    "Turn",
    "TurnHook",
    "TurnTimeoutError",
    "UnregisteredAgentError",
    "UnregisteredHookError",
    "UnregisteredToolError",
    "UnserializableHookError",
    "WrongRunMethodError",
    "hook",
    "tool",
}

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_all_is_sorted() -> None:
    assert list(pygents.__all__) == sorted(pygents.__all__)


def test_all_lists_exactly_the_public_names() -> None:
    assert set(pygents.__all__) == PUBLIC_NAMES


def test_all_has_no_duplicates() -> None:
    assert len(pygents.__all__) == len(set(pygents.__all__))


def test_every_name_in_all_is_importable() -> None:
    for name in pygents.__all__:
        assert getattr(pygents, name) is not None


def test_context_module_exports_context_classes() -> None:
    assert set(pygents.context.__all__) == {"ContextItem", "ContextQueue", "ContextPool"}


def test_context_module_classes_are_the_package_classes() -> None:
    assert pygents.context.ContextItem is pygents.ContextItem
    assert pygents.context.ContextQueue is pygents.ContextQueue
    assert pygents.context.ContextPool is pygents.ContextPool


def test_import_pulls_in_only_standard_library_modules() -> None:
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pygents, pygents.context\n"
        "new = set(sys.modules) - before\n"
        "third = sorted(m for m in new if m.split('.')[0] not in sys.stdlib_module_names"
        " and m.split('.')[0] != 'pygents')\n"
        "print(','.join(third))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert result.stdout.strip() == ""


def test_import_does_not_pull_in_pygents_dist() -> None:
    script = "import sys, pygents\nprint('pygents_dist' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert result.stdout.strip() == "False"
