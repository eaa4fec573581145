"""The client scenarios of ``tests/dist/test_client.py`` (call, stream, pause and resume)
against a worker process and a Redis in a container: the same test code, collected here, where
``redis_server`` is the container (see this folder's conftest)."""

import pytest

from tests.dist.test_client import (
    namespace,
    test_call_returns_the_tool_result,
    test_pause_holds_new_turns_until_resume,
    test_remote_exception_carries_type_message_and_traceback,
    test_stream_yields_generator_values_as_produced,
)

__all__ = [
    "namespace",
    "test_call_returns_the_tool_result",
    "test_pause_holds_new_turns_until_resume",
    "test_remote_exception_carries_type_message_and_traceback",
    "test_stream_yields_generator_values_as_produced",
]

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]
