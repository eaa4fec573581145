"""The takeover scenarios of ``tests/dist/test_handover.py`` against a Redis in a container: a
SIGKILLed worker's turn finished once by the survivor, and a send crossing to another worker
process. The same test code, collected here, where ``redis_server`` is the container."""

import pytest

from tests.dist.test_handover import (
    test_a_killed_workers_turn_is_finished_once_by_the_survivor,
    test_a_send_from_a_tool_reaches_an_agent_served_by_another_process,
)

__all__ = [
    "test_a_killed_workers_turn_is_finished_once_by_the_survivor",
    "test_a_send_from_a_tool_reaches_an_agent_served_by_another_process",
]

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]
