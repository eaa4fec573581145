"""Exception types: each is public and has the built-in base programs catch it by."""

import pytest

import pygents
from pygents import (
    SafeExecutionError,
    TurnTimeoutError,
    UnregisteredAgentError,
    UnregisteredHookError,
    UnregisteredToolError,
    UnserializableHookError,
    WrongRunMethodError,
)


@pytest.mark.parametrize(
    ("error", "base"),
    [
        (TurnTimeoutError, TimeoutError),
        (UnregisteredToolError, KeyError),
        (UnregisteredAgentError, KeyError),
        (UnregisteredHookError, KeyError),
        (UnserializableHookError, ValueError),
        (SafeExecutionError, Exception),
        (WrongRunMethodError, Exception),
    ],
)
def test_error_has_spec_base_class(error: type[Exception], base: type[Exception]) -> None:
    assert issubclass(error, base)


@pytest.mark.parametrize("error", [SafeExecutionError, WrongRunMethodError])
def test_plain_errors_are_not_builtin_subclasses(error: type[Exception]) -> None:
    assert error.__mro__[1] is Exception


@pytest.mark.parametrize(
    "error",
    [
        UnregisteredToolError,
        UnregisteredAgentError,
        UnregisteredHookError,
    ],
)
def test_unregistered_errors_are_caught_as_key_error(error: type[Exception]) -> None:
    with pytest.raises(KeyError):
        raise error("missing")


def test_turn_timeout_error_is_caught_as_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        raise TurnTimeoutError("too slow")


def test_unserializable_hook_error_is_caught_as_value_error() -> None:
    with pytest.raises(ValueError):
        raise UnserializableHookError("closure")


@pytest.mark.parametrize(
    "name",
    [
        "SafeExecutionError",
        "TurnTimeoutError",
        "UnregisteredAgentError",
        "UnregisteredHookError",
        "UnregisteredToolError",
        "UnserializableHookError",
        "WrongRunMethodError",
    ],
)
def test_error_is_importable_from_package(name: str) -> None:
    assert issubclass(getattr(pygents, name), Exception)
