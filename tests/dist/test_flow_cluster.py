"""Flow control on a Redis Cluster: rate and concurrency limits work (their keys are per
tool); delayed turns and schedules are refused with a clear error (their scripts write the
shared indexes beside an agent's keys: not yet supported on a cluster)."""

from __future__ import annotations

import uuid

import pytest

from pygents import Schedule
from pygents_dist import Client, _concurrency, _rate_limit, _schedules, _timers
from pygents_dist.testing import RedisCluster


async def test_limits_work_and_timers_are_refused_on_a_cluster(
    redis_cluster: RedisCluster,
) -> None:
    async with Client(redis_cluster.url, namespace=f"f{uuid.uuid4().hex[:8]}") as client:
        transport = client.transport
        waits = [await _rate_limit.take_slot(transport, "t", 1000.0, 2) for _ in range(3)]
        assert waits[:2] == [0, 0] and 900 < waits[2] <= 1000
        assert await _concurrency.take_slot(transport, "t", "a", 1, 5000)
        assert not await _concurrency.take_slot(transport, "t", "b", 1, 5000)
        await _concurrency.release_slot(transport, "t", "a")
        assert await _concurrency.take_slot(transport, "t", "b", 1, 5000)
        with pytest.raises(NotImplementedError, match="delayed turns"):
            await _timers.delay_turns(transport, "a", [("t1", "+1000", b"m", b"")])
        stored = _schedules.spec(Schedule.every(1), "x")
        with pytest.raises(NotImplementedError, match="schedules"):
            await _schedules.put(transport, "a", "s", stored)
